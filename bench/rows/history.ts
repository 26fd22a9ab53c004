import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { promisify } from 'node:util';
import { openContext, type Context } from '../../supervisor/context.js';
import { runningDaemon } from '../../supervisor/pidfile.js';
import { buildStatus } from '../../supervisor/status.js';
import { PRIORITIES } from '../../contract/job.js';
import {
  BinSupervisor,
  CLI,
  shebangFlags,
  supervisorEnv,
  waitUntil,
} from '../lib/harness.js';
import { makeRepo } from '../lib/git.js';
import { connect, deletePrefix, freshPrefix } from '../lib/redis.js';
import type { BenchOptions, RowResult } from '../lib/row.js';
import { fmtMs, median, nowMs, round } from '../lib/stats.js';

const run = promisify(execFile);

/** Every read path a user or a page touches, timed at each history size. */
const PATHS = [
  ['status', 'status (buildStatus)'],
  ['snapshot', 'page snapshot (GET /api/status)'],
  ['issuesApi', 'issues API (GET /api/issues)'],
  ['metrics', 'GET /metrics'],
  ['issueShow', '`supervisor issue show` (CLI)'],
  ['issueList', '`supervisor issue list` (CLI)'],
] as const;
type PathId = (typeof PATHS)[number][0];

/**
 * A finished history written through the project's own store code, as the recorder writes it:
 * the issue, its run claimed then succeeded (or failed), the issue done (or failed) with its
 * branch and commit (the base tip, so its merge state is computed once, as a long-running
 * supervisor has it). Plus a few open issues, so the page has a queue to show.
 */
function buildHistory(ctx: Context, n: number, head: string): void {
  const body = `The login redirect drops the query string.\nSteps: open /login?next=/a, sign in.\n${'x'.repeat(200)}\n`;
  const BATCH = 5000;
  for (let start = 0; start < n; start += BATCH) {
    ctx.db.transaction(() => {
      for (let k = start; k < Math.min(n, start + BATCH); k++) {
        const i = ctx.issues.add({
          title: `history ${k + 1}`,
          body,
          priority: PRIORITIES[k % 4]!,
        });
        const jobId = `issue-${i.id}`;
        const agent = `agent-00${(k % 4) + 1}`;
        ctx.issues.update(i.id, { status: 'queued' });
        ctx.runs.upsert(i.id, jobId, 1, {
          agent,
          startedAt: 1_000 + k,
          outcome: 'running',
        });
        ctx.issues.update(i.id, { status: 'in_progress', agent, attempts: 1 });
        const ok = k % 10 !== 0;
        ctx.runs.upsert(i.id, jobId, 1, {
          outcome: ok ? 'succeeded' : 'failed',
          finishedAt: 1_000 + k + (k % 600) * 1000,
          durationMs: (k % 600) * 1000,
          exitCode: ok ? 0 : 1,
          ...(ok ? { commitSha: head } : {}),
        });
        ctx.issues.update(
          i.id,
          ok
            ? { status: 'done', branch: `issue/${i.id}`, commit: head }
            : { status: 'failed', error: 'agent exited 1' },
        );
        // A long-running supervisor's steady state: merge states computed against the tip.
        if (ok)
          ctx.issues.update(i.id, {
            behind: 0,
            mergeable: true,
            conflictFiles: [],
            checkedBase: head,
            checkedCommit: head,
          });
      }
    })();
  }
  for (let k = 0; k < 20; k++) ctx.issues.add({ title: `open ${k + 1}`, body });
}

function get(url: string): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = request(url, (res) => {
      let bytes = 0;
      res.on('data', (d: Buffer) => (bytes += d.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Keeps one page's event stream open (what a browser tab does) until `close`. */
function openPage(url: string): { events: () => number; close: () => void } {
  let events = 0;
  const req = request(`${url}/api/events`, (res) =>
    res.on('data', (d: Buffer) => {
      events += (d.toString().match(/^event: status$/gm) ?? []).length;
    }),
  );
  req.on('error', () => undefined);
  req.end();
  return { events: () => events, close: () => req.destroy() };
}

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of stat (11 and 12 after the command name), in ticks.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function timed(
  repeats: number,
  fn: () => Promise<unknown>,
): Promise<number[]> {
  await fn(); // warm: statements compiled, pages cached
  const out: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = nowMs();
    await fn();
    out.push(nowMs() - t0);
  }
  return out;
}

interface SizeResult {
  size: number;
  buildS: number;
  dbMb: number;
  ms: Record<PathId, number>;
  samples: Record<PathId, number[]>;
  idleCpuPct: number;
  noPageCpuPct: number;
  idlePushes: number;
}

async function measureSize(
  size: number,
  o: BenchOptions,
  repeats: number,
  idleS: number,
): Promise<SizeResult> {
  const repo = await makeRepo(1);
  const prefix = freshPrefix();
  const env = supervisorEnv(prefix, 'true');
  try {
    o.log(`history: writing ${size.toLocaleString('en')} finished issues`);
    const t0 = nowMs();
    const ctx = await openContext({ repo: repo.dir, init: true, env });
    const head = (
      await run('git', ['rev-parse', 'HEAD'], { cwd: repo.dir })
    ).stdout.trim();
    buildHistory(ctx, size, head);
    const buildS = (nowMs() - t0) / 1000;
    ctx.close();
    const sup = await BinSupervisor.start(repo.dir, prefix, 'true', {
      agents: 0,
    });
    const redis = connect();
    try {
      const url = await waitUntil(
        () => runningDaemon(sup.ctx.paths.pidFile)?.dashboardUrl,
        'the dashboard URL',
        { timeoutMs: 60_000, intervalMs: 50 },
      );
      const base = url.replace(/\/$/, '');
      const cliEnv = { ...process.env, ...env };
      const cli = (args: string[]) =>
        run(process.execPath, [...shebangFlags(CLI), CLI, ...args], {
          cwd: repo.dir,
          env: cliEnv,
          maxBuffer: 64 * 1024 * 1024,
        });
      const middle = Math.max(1, Math.floor(size / 2));
      const samples = {} as Record<PathId, number[]>;
      o.log(`history ${size}: timing the read paths (${repeats} each)`);
      samples.status = await timed(repeats, () => buildStatus(sup.ctx, redis));
      samples.snapshot = await timed(repeats, () => get(`${base}/api/status`));
      samples.issuesApi = await timed(repeats, () => get(`${base}/api/issues`));
      samples.metrics = await timed(repeats, () => get(`${base}/metrics`));
      const cliRepeats = Math.max(3, Math.round(repeats / 3));
      samples.issueShow = await timed(cliRepeats, () =>
        cli(['issue', 'show', String(middle), '--json']),
      );
      samples.issueList = await timed(cliRepeats, () =>
        cli(['issue', 'list', '--json']),
      );
      o.log(`history ${size}: idle supervisor, no page, ${idleS} s`);
      const n0 = cpuSeconds(sup.pid);
      const nw0 = nowMs();
      await new Promise((r) => setTimeout(r, idleS * 1000));
      const noPageCpuPct =
        ((cpuSeconds(sup.pid) - n0) / ((nowMs() - nw0) / 1000)) * 100;
      o.log(`history ${size}: idle supervisor with one page open, ${idleS} s`);
      const page = openPage(base);
      await new Promise((r) => setTimeout(r, 2000));
      const c0 = cpuSeconds(sup.pid);
      const w0 = nowMs();
      const e0 = page.events();
      await new Promise((r) => setTimeout(r, idleS * 1000));
      const idleCpuPct =
        ((cpuSeconds(sup.pid) - c0) / ((nowMs() - w0) / 1000)) * 100;
      const idlePushes = page.events() - e0;
      page.close();
      const ms = Object.fromEntries(
        PATHS.map(([id]) => [id, median(samples[id])]),
      ) as Record<PathId, number>;
      const dbMb =
        Number(
          (await run('du', ['-sk', sup.ctx.paths.dbFile])).stdout.split(
            '\t',
          )[0],
        ) / 1024;
      return {
        size,
        buildS,
        dbMb,
        ms,
        samples,
        idleCpuPct,
        noPageCpuPct,
        idlePushes,
      };
    } finally {
      redis.disconnect();
      await sup.stop();
    }
  } finally {
    repo.cleanup();
    await deletePrefix(prefix);
  }
}

/**
 * Issue 16: histories of 1k, 10k and 100k finished issues (quick: 1k and 10k), written through the
 * store code; each read path's median at each size and its growth (largest ÷ 1k), and the idle
 * supervisor's CPU with one page open.
 */
export async function historyRows(o: BenchOptions): Promise<RowResult[]> {
  const sizes = o.quick ? [1_000, 10_000] : [1_000, 10_000, 100_000];
  const repeats = o.quick ? 9 : 21;
  const idleS = o.quick ? 10 : 30;
  const results: SizeResult[] = [];
  for (const size of sizes)
    results.push(await measureSize(size, o, repeats, idleS));
  const small = results[0]!;
  const large = results[results.length - 1]!;
  const k = (n: number) => `${n / 1000}k`;
  const rows: RowResult[] = PATHS.map(([id, label]) => {
    const ratio = large.ms[id] / small.ms[id];
    return {
      id: `history-${id}`,
      title: `History ${k(large.size)} vs ${k(small.size)}: ${label}`,
      ours: `${fmtMs(large.ms[id])} at ${k(large.size)}`,
      baseline: `${fmtMs(small.ms[id])} at ${k(small.size)}`,
      comparison: `${ratio.toFixed(2)}×${results.length > 2 ? ` (${k(results[1]!.size)}: ${fmtMs(results[1]!.ms[id])})` : ''}`,
      target: '≤ 1.5×',
      met: ratio <= 1.5,
      data: {
        sizes: results.map((r) => r.size),
        medianMs: results.map((r) => round(r.ms[id], 3)),
        samplesMs: results.map((r) => r.samples[id].map((v) => round(v, 3))),
        ratio: round(ratio, 3),
      },
    };
  });
  rows.push({
    id: 'history-idle-cpu',
    title: `History: idle supervisor CPU, one page open (${idleS} s)`,
    ours: `${large.idleCpuPct.toFixed(2)} % at ${k(large.size)}`,
    baseline: `${small.idleCpuPct.toFixed(2)} % at ${k(small.size)} (no page: ${small.noPageCpuPct.toFixed(2)} → ${large.noPageCpuPct.toFixed(2)} %)`,
    comparison: `${(large.idleCpuPct - small.idleCpuPct).toFixed(2)} points`,
    target: '≤ 2 %',
    met: large.idleCpuPct <= 2,
    data: {
      sizes: results.map((r) => r.size),
      idleCpuPct: results.map((r) => round(r.idleCpuPct, 3)),
      noPageCpuPct: results.map((r) => round(r.noPageCpuPct, 3)),
      pushes: results.map((r) => r.idlePushes),
      historyBuildS: results.map((r) => round(r.buildS, 1)),
      databaseMb: results.map((r) => round(r.dbMb, 1)),
    },
  });
  return rows;
}
