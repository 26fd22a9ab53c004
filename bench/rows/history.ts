import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { loadavg } from 'node:os';
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
import { fmtMs, median, nowMs, percentile, round } from '../lib/stats.js';

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
export function buildHistory(ctx: Context, n: number, head: string): void {
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

/** Median and interquartile range of a series, for the table's spread. */
function spread(samples: readonly number[]): string {
  return `${fmtMs(percentile(samples, 25))}–${fmtMs(percentile(samples, 75))}`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One history size with its own repository, Redis prefix and running supervisor. */
interface Size {
  size: number;
  buildS: number;
  dbMb: number;
  sup: BinSupervisor;
  base: string;
  cli: (args: string[]) => Promise<unknown>;
  cleanup: () => Promise<void>;
}

async function prepareSize(size: number, o: BenchOptions): Promise<Size> {
  const repo = await makeRepo(1);
  const prefix = freshPrefix();
  try {
    return await startSize(size, o, repo, prefix);
  } catch (err) {
    // A size that never started is cleaned by nobody else: up to 100 MB left in $TMPDIR.
    repo.cleanup();
    await deletePrefix(prefix);
    throw err;
  }
}

async function startSize(
  size: number,
  o: BenchOptions,
  repo: Awaited<ReturnType<typeof makeRepo>>,
  prefix: string,
): Promise<Size> {
  const env = supervisorEnv(prefix, 'true');
  o.log(`history: writing ${size.toLocaleString('en')} finished issues`);
  const t0 = nowMs();
  const ctx = await openContext({ repo: repo.dir, init: true, env });
  const head = (
    await run('git', ['rev-parse', 'HEAD'], { cwd: repo.dir })
  ).stdout.trim();
  buildHistory(ctx, size, head);
  const buildS = (nowMs() - t0) / 1000;
  const dbFile = ctx.paths.dbFile;
  ctx.close();
  const dbMb =
    Number((await run('du', ['-sk', dbFile])).stdout.split('\t')[0]) / 1024;
  const sup = await BinSupervisor.start(repo.dir, prefix, 'true', {
    agents: 0,
  });
  const url = await waitUntil(
    () => runningDaemon(sup.ctx.paths.pidFile)?.dashboardUrl,
    'the dashboard URL',
    { timeoutMs: 60_000, intervalMs: 50 },
  ).catch(async (err: unknown) => {
    await sup.stop().catch(() => undefined);
    throw err;
  });
  const cliEnv = { ...process.env, ...env };
  return {
    size,
    buildS,
    dbMb,
    sup,
    base: url.replace(/\/$/, ''),
    cli: (args) =>
      run(process.execPath, [...shebangFlags(CLI), CLI, ...args], {
        cwd: repo.dir,
        env: cliEnv,
        maxBuffer: 64 * 1024 * 1024,
      }),
    cleanup: async () => {
      await sup.stop().catch(() => undefined);
      repo.cleanup();
      await deletePrefix(prefix);
    },
  };
}

/**
 * Times `fn` on every size, interleaved: each round calls it once per size, the order rotating
 * from round to round, so every size meets the same machine (load, page cache, this process's
 * heap) and no size is always first. `warm` rounds first are not counted.
 */
async function interleaved(
  sizes: readonly Size[],
  repeats: number,
  warm: number,
  fn: (s: Size) => Promise<unknown>,
): Promise<number[][]> {
  const out = sizes.map(() => [] as number[]);
  for (let r = 0; r < warm + repeats; r++) {
    for (let k = 0; k < sizes.length; k++) {
      const i = (r + k) % sizes.length;
      const t0 = nowMs();
      await fn(sizes[i]!);
      if (r >= warm) out[i]!.push(nowMs() - t0);
    }
  }
  return out;
}

/** Each supervisor's own CPU (utime + stime) over the same window, as a percentage of one core. */
async function cpuPct(
  sizes: readonly Size[],
  seconds: number,
): Promise<number[]> {
  const c0 = sizes.map((s) => cpuSeconds(s.sup.pid));
  const w0 = nowMs();
  await sleep(seconds * 1000);
  const wall = (nowMs() - w0) / 1000;
  return sizes.map((s, i) => ((cpuSeconds(s.sup.pid) - c0[i]!) / wall) * 100);
}

/**
 * Issue 16: histories of 1k, 10k and 100k finished issues (quick: 1k and 10k), written through the
 * store code, each with its own supervisor running; every read path timed on all sizes in
 * interleaved rounds (median, interquartile range) and its growth (largest ÷ 1k); the idle
 * supervisors' CPU over the same window, without and with one page open.
 */
export async function historyRows(o: BenchOptions): Promise<RowResult[]> {
  const sizeList = o.quick ? [1_000, 10_000] : [1_000, 10_000, 100_000];
  const repeats = o.quick ? 21 : 101;
  const cliRepeats = o.quick ? 5 : 21;
  const idleS = o.quick ? 10 : 30;
  const sizes: Size[] = [];
  const redis = connect();
  try {
    for (const n of sizeList) sizes.push(await prepareSize(n, o));
    // Every supervisor past its start-up work (first reconcile, merge states) before timing.
    await sleep(10_000);
    const samples = {} as Record<PathId, number[][]>;
    const loads: Record<string, number[]> = { before: loadNow() };
    o.log(
      `history: timing the read paths (${repeats} rounds over ${sizes.length} sizes)`,
    );
    samples.status = await interleaved(sizes, repeats, 3, (s) =>
      buildStatus(s.sup.ctx, redis),
    );
    samples.snapshot = await interleaved(sizes, repeats, 3, (s) =>
      get(`${s.base}/api/status`),
    );
    samples.issuesApi = await interleaved(sizes, repeats, 3, (s) =>
      get(`${s.base}/api/issues`),
    );
    samples.metrics = await interleaved(sizes, repeats, 3, (s) =>
      get(`${s.base}/metrics`),
    );
    samples.issueShow = await interleaved(sizes, cliRepeats, 1, (s) =>
      s.cli([
        'issue',
        'show',
        String(Math.max(1, Math.floor(s.size / 2))),
        '--json',
      ]),
    );
    samples.issueList = await interleaved(sizes, cliRepeats, 1, (s) =>
      s.cli(['issue', 'list', '--json']),
    );
    loads.reads = loadNow();
    o.log(`history: idle supervisors, no page, ${idleS} s`);
    const noPage = await cpuPct(sizes, idleS);
    loads.noPage = loadNow();
    o.log(`history: idle supervisors with one page open each, ${idleS} s`);
    const pages = sizes.map((s) => openPage(s.base));
    await sleep(2000);
    const e0 = pages.map((p) => p.events());
    const withPage = await cpuPct(sizes, idleS);
    const pushes = pages.map((p, i) => p.events() - e0[i]!);
    for (const p of pages) p.close();
    loads.page = loadNow();
    return historyTable(sizes, samples, noPage, withPage, pushes, idleS, loads);
  } finally {
    redis.disconnect();
    for (const s of sizes) await s.cleanup();
  }
}

const loadNow = () => loadavg().map((l) => round(l, 2));

function historyTable(
  sizes: readonly Size[],
  samples: Record<PathId, number[][]>,
  noPage: number[],
  withPage: number[],
  pushes: number[],
  idleS: number,
  loads: Record<string, number[]>,
): RowResult[] {
  const small = 0;
  const large = sizes.length - 1;
  const k = (i: number) => `${sizes[i]!.size / 1000}k`;
  const rows: RowResult[] = PATHS.map(([id, label]) => {
    const per = samples[id];
    const med = per.map((x) => median(x));
    const ratio = med[large]! / med[small]!;
    // The same ratio per round (sizes timed side by side): its quartiles are the ratio's spread.
    const perRound = per[large]!.map((v, r) => v / per[small]![r]!);
    return {
      id: `history-${id}`,
      title: `History ${k(large)} vs ${k(small)}: ${label}, median of ${per[0]!.length} interleaved`,
      ours: `${fmtMs(med[large]!)} at ${k(large)} (IQR ${spread(per[large]!)})`,
      baseline: `${fmtMs(med[small]!)} at ${k(small)} (IQR ${spread(per[small]!)})`,
      comparison: `${ratio.toFixed(2)}× (per round ${percentile(perRound, 25).toFixed(2)}–${percentile(perRound, 75).toFixed(2)}×)${sizes.length > 2 ? `; ${k(1)}: ${fmtMs(med[1]!)}` : ''}`,
      target: '≤ 1.5×',
      met: ratio <= 1.5,
      data: {
        sizes: sizes.map((s) => s.size),
        medianMs: med.map((v) => round(v, 3)),
        samplesMs: per.map((x) => x.map((v) => round(v, 3))),
        perRoundRatio: perRound.map((v) => round(v, 3)),
        ratio: round(ratio, 3),
        loads,
      },
    };
  });
  rows.push({
    id: 'history-idle-cpu',
    title: `History: idle supervisor CPU, one page open (${idleS} s, all sizes at once)`,
    ours: `${withPage[large]!.toFixed(2)} % at ${k(large)}`,
    baseline: `${withPage[small]!.toFixed(2)} % at ${k(small)} (no page: ${noPage[small]!.toFixed(2)} → ${noPage[large]!.toFixed(2)} %)`,
    comparison: `${(withPage[large]! - withPage[small]!).toFixed(2)} points`,
    target: '≤ 2 %',
    met: withPage[large]! <= 2,
    data: {
      sizes: sizes.map((s) => s.size),
      idleCpuPct: withPage.map((v) => round(v, 3)),
      noPageCpuPct: noPage.map((v) => round(v, 3)),
      pushes,
      historyBuildS: sizes.map((s) => round(s.buildS, 1)),
      databaseMb: sizes.map((s) => round(s.dbMb, 1)),
      loads,
    },
  });
  return rows;
}
