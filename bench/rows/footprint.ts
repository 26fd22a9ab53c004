import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { openContext } from '../../supervisor/context.js';
import { readRegistry } from '../../supervisor/registry.js';
import { RawWorkerProcess, rssOf, supervisorEnv, waitUntil } from '../lib/harness.js';
import { makeRepo } from '../lib/git.js';
import { connect, deletePrefix, freshPrefix, REDIS_URL } from '../lib/redis.js';
import type { BenchOptions, RowResult } from '../lib/row.js';
import { fmtMb, median, round } from '../lib/stats.js';

const CLI = fileURLToPath(new URL('../../supervisor/cli/main.js', import.meta.url));

/** `#!/usr/bin/env -S node --flag` → ['--flag']. */
function shebangFlags(file: string): string[] {
  const first = readFileSync(file, 'utf8').split('\n', 1)[0] ?? '';
  const m = /^#!\S*?(?:env\s+(?:-S\s+)?)?node\b(.*)$/.exec(first);
  return m?.[1]?.trim() ? m[1].trim().split(/\s+/) : [];
}
const AGENTS = 10;
const ISSUES = 10_000;

/**
 * RSS of a real `supervisor start --agents 10` (dashboard on, as by default) while 10 agents
 * work through 10,000 issues; RSS of its runners while idle, vs an idle plain BullMQ worker.
 */
export async function footprintRows(o: BenchOptions): Promise<RowResult[]> {
  const windowMs = o.quick ? 10_000 : 30_000;
  const repo = await makeRepo(1000);
  const prefix = freshPrefix();
  const env = { ...supervisorEnv(prefix, `printf '%s\\n' "$ISSUE_ID" > bench-change.txt`), SUPERVISOR_DASHBOARD_PORT: '0' };
  const ctx = await openContext({ repo: repo.dir, init: true, env });
  const redis = connect();
  const supRss: number[] = [];
  const busyRunnerRss: number[] = [];
  let idleRunners: number[] = [];
  let hwm = Number.NaN;
  let rawIdle = Number.NaN;
  try {
    o.log(`footprint: supervisor start --agents ${AGENTS}`);
    const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
    // Node flags as the installed `supervisor` bin gets them from its shebang line.
    const child = spawn(process.execPath, [...shebangFlags(CLI), CLI, 'start', '--agents', String(AGENTS)], { cwd: repo.dir, env: childEnv, stdio: ['ignore', 'ignore', 'pipe'] });
    let output = '';
    child.stderr.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      const registry = () => readRegistry(redis, prefix, ctx.queueName, 10_000);
      await waitUntil(
        async () => {
          if (child.exitCode !== null) throw new Error(`supervisor exited: ${output}`);
          const reg = await registry();
          return reg.size === AGENTS && [...reg.values()].every((a) => a.state === 'idle');
        },
        `${AGENTS} idle runners`,
        { timeoutMs: 120_000, intervalMs: 50 },
      );
      await new Promise((r) => setTimeout(r, 1000));
      const pids = [...(await registry()).values()].map((a) => a.pid!).filter(Boolean);
      idleRunners = pids.map((p) => rssOf(p).rss);

      o.log(`footprint: ${ISSUES} issues, sampling RSS for ${windowMs / 1000} s`);
      ctx.db.transaction(() => {
        for (let i = 0; i < ISSUES; i++) ctx.issues.add({ title: `footprint ${i + 1}`, body: `Issue ${i + 1}: make the change.\n` });
      })();
      const until = Date.now() + windowMs;
      while (Date.now() < until) {
        supRss.push(rssOf(child.pid!).rss);
        for (const p of pids) busyRunnerRss.push(rssOf(p).rss);
        await new Promise((r) => setTimeout(r, 250));
      }
      hwm = rssOf(child.pid!).hwm;
      o.log(`footprint: ${ctx.issues.counts().done} issues done in the window; stopping`);
    } finally {
      child.kill('SIGTERM');
      await exited;
    }

    const raw = await RawWorkerProcess.start({ mode: 'idle', redisUrl: REDIS_URL, prefix, queueName: 'raw-idle' });
    await new Promise((r) => setTimeout(r, 1000));
    rawIdle = rssOf(raw.child.pid!).rss;
    await raw.stop();
  } finally {
    redis.disconnect();
    ctx.close();
    repo.cleanup();
    await deletePrefix(prefix);
  }
  const supMax = Math.max(...supRss);
  const idle = median(idleRunners);
  const idleMax = Math.max(...idleRunners);
  return [
    {
      id: 'footprint-supervisor',
      title: `Supervisor RSS, ${AGENTS} agents + ${ISSUES.toLocaleString('en')} issues (max)`,
      ours: fmtMb(supMax),
      baseline: '—',
      comparison: `median ${fmtMb(median(supRss))}, peak (VmHWM) ${fmtMb(hwm)}`,
      target: '≤ 150 MB',
      met: supMax <= 150 * 1024 ** 2,
      data: { agents: AGENTS, issues: ISSUES, windowS: windowMs / 1000, maxBytes: supMax, medianBytes: median(supRss), hwmBytes: hwm },
    },
    {
      id: 'footprint-runner',
      title: 'Idle runner RSS (median / max of 10)',
      ours: `${fmtMb(idle)} / ${fmtMb(idleMax)}`,
      baseline: `${fmtMb(rawIdle)} idle BullMQ worker`,
      comparison: `+${fmtMb(idle - rawIdle)}`,
      target: '≤ 80 MB',
      met: idleMax <= 80 * 1024 ** 2,
      data: { idleBytes: idleRunners, rawIdleWorkerBytes: rawIdle, busyRunnerMaxBytes: Math.max(...busyRunnerRss) },
    },
  ];
}
