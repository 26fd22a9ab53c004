import {
  closeSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  watch,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { BinSupervisor, RawWorkerProcess } from '../lib/harness.js';
import { git, makeRepo } from '../lib/git.js';
import { connect, deletePrefix, freshPrefix, REDIS_URL } from '../lib/redis.js';
import type { BenchOptions, RowResult } from '../lib/row.js';
import { fmtMs, nowMs, round, summarize } from '../lib/stats.js';

const REPO_FILES = 1000;
const WARMUP = 5;

/** Lines "<issue> <epoch ns>" appended by the no-op agent when it starts. */
class StartLog {
  readonly file: string;
  private offset = 0;
  private readonly seen = new Map<string, number>();
  private waiters = new Map<string, (at: number) => void>();
  private readonly watcher;

  constructor(dir: string) {
    this.file = join(dir, 'starts');
    closeSync(openSync(this.file, 'a'));
    this.watcher = watch(this.file, () => this.read());
  }

  private read(): void {
    const text = readFileSync(this.file, 'utf8');
    const fresh = text.slice(this.offset);
    const end = fresh.lastIndexOf('\n');
    if (end < 0) return;
    this.offset += end + 1;
    for (const line of fresh.slice(0, end).split('\n')) {
      const [id, ns] = line.split(' ');
      if (!id || !ns) continue;
      const at = Number(BigInt(ns) / 1000n) / 1000;
      this.seen.set(id, at);
      this.waiters.get(id)?.(at);
      this.waiters.delete(id);
    }
  }

  started(id: string, timeoutMs = 60_000): Promise<number> {
    this.read();
    const at = this.seen.get(id);
    if (at !== undefined) return Promise.resolve(at);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `agent for issue ${id} did not start within ${timeoutMs} ms`,
            ),
          ),
        timeoutMs,
      );
      this.waiters.set(id, (t) => {
        clearTimeout(timer);
        resolve(t);
      });
    });
  }

  close(): void {
    this.watcher.close();
  }
}

/**
 * Issue added (committed to SQLite by another connection, as the CLI does) → agent process
 * started, one issue at a time on one idle agent, vs plain BullMQ add → processor called, plus
 * the worktree reset alone.
 */
export async function dispatchRow(o: BenchOptions): Promise<RowResult> {
  const n = o.quick ? 40 : 200;
  const repo = await makeRepo(REPO_FILES);
  const tmp = mkdtempSync(join(tmpdir(), 'sup-bench-dispatch-'));
  const starts = new StartLog(tmp);
  const agentCommand = `printf '%s %s\\n' "$ISSUE_ID" "$(date +%s%N)" >> '${starts.file}'`;
  const prefix = freshPrefix();
  try {
    // Ours: the real `supervisor start`, one agent.
    o.log(`dispatch: ours, ${n} issues one at a time on 1 agent`);
    const ours = await BinSupervisor.start(repo.dir, prefix, agentCommand, {
      agents: 1,
    });
    const oursMs: number[] = [];
    const pickupMs: number[] = [];
    const runnerMs: number[] = [];
    try {
      await ours.idle(1);
      for (let i = 0; i < n + WARMUP; i++) {
        const t0 = nowMs();
        const [id] = ours.addIssues([`dispatch ${i}`]);
        const started = await starts.started(String(id));
        await ours.until(
          () => ours.ctx.issues.get(id!)?.status === 'done',
          `#${id} done`,
          2,
        );
        if (i < WARMUP) continue;
        oursMs.push(started - t0);
        const run = ours.ctx.runs.forIssue(id!)[0];
        if (run?.startedAt) {
          pickupMs.push(run.startedAt - t0);
          runnerMs.push(started - run.startedAt);
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    } finally {
      await ours.stop();
    }

    // Raw BullMQ: add → processor called, in another process, on the same Redis.
    o.log(`dispatch: raw BullMQ, ${n} jobs one at a time`);
    const rawPrefix = freshPrefix();
    const rawMs: number[] = [];
    const conn = connect();
    const queue = new Queue('raw-dispatch', {
      connection: conn,
      prefix: rawPrefix,
    });
    const worker = await RawWorkerProcess.start({
      mode: 'dispatch',
      redisUrl: REDIS_URL,
      prefix: rawPrefix,
      queueName: 'raw-dispatch',
    });
    try {
      for (let i = 0; i < n + WARMUP; i++) {
        const id = `job-${i}`;
        const called = worker.next((m) => m.type === 'called' && m.id === id);
        const completed = worker.next(
          (m) => m.type === 'completed' && m.id === id,
        );
        const t0 = nowMs();
        await queue.add(
          'issue',
          { title: `dispatch ${i}`, body: '', priority: 'medium' },
          { jobId: id, priority: 3 },
        );
        const { at } = (await called) as { at: number };
        await completed;
        if (i >= WARMUP) rawMs.push(at - t0);
        await new Promise((r) => setTimeout(r, 5));
      }
    } finally {
      await worker.stop();
      await queue.close();
      conn.disconnect();
      await deletePrefix(rawPrefix);
    }

    // The worktree reset alone, as the runner does it: checkout -B the base, clean.
    o.log(`dispatch: worktree reset alone, ${n} times`);
    const wt = join(repo.dir, '.worktrees', 'reset-probe');
    await git(repo.dir, [
      'worktree',
      'add',
      '-q',
      '-b',
      'bench/reset',
      wt,
      'main',
    ]);
    const resetMs: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = nowMs();
      await git(wt, ['checkout', '--force', '-q', '-B', 'bench/reset', 'main']);
      await git(wt, ['clean', '-fdq']);
      resetMs.push(nowMs() - t0);
    }

    const s = summarize(oursMs);
    const r = summarize(rawMs);
    const z = summarize(resetMs);
    // Overhead per sample (the i-th of each series, measured in the same order), then its
    // percentiles: subtracting percentiles (p99 ours − p99 raw − p99 reset) understates the
    // tail, since the slow samples of each side need not coincide.
    const m = Math.min(oursMs.length, rawMs.length, resetMs.length);
    const diff = summarize(
      Array.from({ length: m }, (_, i) => oursMs[i]! - rawMs[i]! - resetMs[i]!),
    );
    const over50 = diff.p50;
    const over99 = diff.p99;
    return {
      id: 'dispatch',
      title: `Dispatch latency, p50 / p99 (${n} issues)`,
      ours: `${fmtMs(s.p50)} / ${fmtMs(s.p99)}`,
      baseline: `${fmtMs(r.p50)} / ${fmtMs(r.p99)} raw + ${fmtMs(z.p50)} / ${fmtMs(z.p99)} reset`,
      comparison: `${signed(over50)} / ${signed(over99)} overhead (per sample, n=${m})`,
      target: 'p99 overhead ≤ 50 ms',
      met: over99 <= 50,
      data: {
        issues: n,
        repoFiles: REPO_FILES,
        oursMs: roundAll(s),
        rawMs: roundAll(r),
        resetMs: roundAll(z),
        overheadP50Ms: round(over50),
        overheadP99Ms: round(over99),
        overheadPerSampleMs: roundAll(diff),
        overheadOfPercentilesMs: {
          p50: round(s.p50 - r.p50 - z.p50),
          p99: round(s.p99 - r.p99 - z.p99),
        },
        breakdown: {
          issueAddedToRunnerPickupMs: roundAll(summarize(pickupMs)),
          runnerPickupToAgentStartMs: roundAll(summarize(runnerMs)),
        },
      },
    };
  } finally {
    starts.close();
    repo.cleanup();
    rmSync(tmp, { recursive: true, force: true });
    await deletePrefix(prefix);
  }
}

const signed = (ms: number): string =>
  ms < 0 ? `−${fmtMs(-ms)}` : `+${fmtMs(ms)}`;

export function roundAll<T extends object>(o: T): T {
  return Object.fromEntries(
    Object.entries(o).map(([k, v]) => [
      k,
      typeof v === 'number' ? round(v) : v,
    ]),
  ) as T;
}
