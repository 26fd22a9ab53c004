import { BinSupervisor, RawWorkerProcess, rssOf } from '../lib/harness.js';
import { makeRepo } from '../lib/git.js';
import { deletePrefix, freshPrefix, REDIS_URL } from '../lib/redis.js';
import type { BenchOptions, RowResult } from '../lib/row.js';
import { fmtMb, median } from '../lib/stats.js';

const AGENTS = 10;
const ISSUES = 10_000;
const MB = 1024 ** 2;

/**
 * RSS of a real `supervisor start --agents 10` (dashboard on, as by default) while its agents
 * work through 10,000 issues; RSS of its runners while idle, vs an idle plain BullMQ worker.
 */
export async function footprintRows(o: BenchOptions): Promise<RowResult[]> {
  const windowMs = o.quick ? 10_000 : 30_000;
  const repo = await makeRepo(1000);
  const prefix = freshPrefix();
  const supRss: number[] = [];
  const busyRunnerRss: number[] = [];
  let idleRunners: number[] = [];
  let hwm = Number.NaN;
  let rawIdle = Number.NaN;
  let done = 0;
  try {
    o.log(`footprint: supervisor start --agents ${AGENTS}`);
    const sup = await BinSupervisor.start(
      repo.dir,
      prefix,
      `printf '%s\\n' "$ISSUE_ID" > bench-change.txt`,
      { agents: AGENTS },
    );
    try {
      await sup.idle(AGENTS);
      await new Promise((r) => setTimeout(r, 1000));
      const pids = [...(await sup.registry()).values()]
        .map((a) => a.pid!)
        .filter(Boolean);
      idleRunners = pids.map((p) => rssOf(p).rss);

      o.log(
        `footprint: ${ISSUES.toLocaleString('en')} issues, sampling RSS for ${windowMs / 1000} s`,
      );
      sup.addIssues(
        Array.from({ length: ISSUES }, (_, i) => `footprint ${i + 1}`),
        'Make the change.\n',
      );
      const until = Date.now() + windowMs;
      while (Date.now() < until) {
        supRss.push(rssOf(sup.pid).rss);
        for (const p of pids) busyRunnerRss.push(rssOf(p).rss);
        await new Promise((r) => setTimeout(r, 250));
      }
      hwm = rssOf(sup.pid).hwm;
      done = sup.ctx.issues.counts().done;
      o.log(`footprint: ${done} issues done in the window; stopping`);
    } finally {
      await sup.stop();
    }

    const raw = await RawWorkerProcess.start({
      mode: 'idle',
      redisUrl: REDIS_URL,
      prefix,
      queueName: 'raw-idle',
    });
    await new Promise((r) => setTimeout(r, 1000));
    rawIdle = rssOf(raw.child.pid!).rss;
    await raw.stop();
  } finally {
    repo.cleanup();
    await deletePrefix(prefix);
  }
  const supMax = Math.max(...supRss);
  const idle = median(idleRunners);
  const idleMax = Math.max(...idleRunners);
  const diff = idle - rawIdle;
  return [
    {
      id: 'footprint-supervisor',
      title: `Supervisor RSS, ${AGENTS} agents + ${ISSUES.toLocaleString('en')} issues (max)`,
      ours: fmtMb(supMax),
      baseline: '—',
      comparison: `median ${fmtMb(median(supRss))}, VmHWM ${fmtMb(hwm)}`,
      target: '≤ 150 MB',
      met: supMax <= 150 * MB,
      data: {
        agents: AGENTS,
        issues: ISSUES,
        windowS: windowMs / 1000,
        issuesDoneInWindow: done,
        maxBytes: supMax,
        medianBytes: median(supRss),
        hwmBytes: hwm,
      },
    },
    {
      id: 'footprint-runner',
      title: `Idle runner RSS (median / max of ${idleRunners.length})`,
      ours: `${fmtMb(idle)} / ${fmtMb(idleMax)}`,
      baseline: `${fmtMb(rawIdle)} idle BullMQ worker (1 sample, the same node flags)`,
      comparison: `${diff < 0 ? '−' : '+'}${fmtMb(Math.abs(diff))}`,
      target: '≤ 80 MB',
      met: idleMax <= 80 * MB,
      data: {
        idleBytes: idleRunners,
        rawIdleWorkerBytes: rawIdle,
        busyRunnerMaxBytes: Math.max(...busyRunnerRss),
      },
    },
  ];
}
