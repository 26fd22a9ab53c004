/**
 * The baselines: what a user writes by hand with plain BullMQ and git. Runs in its own process
 * (like our runners do) and reports to the benchmark over IPC.
 *   dispatch — one Worker whose processor only notes the time it was called;
 *   pool     — one Worker per worktree: git reset + the agent command + commit per job;
 *   idle     — one Worker waiting for jobs (its RSS is the baseline of an idle runner);
 *   hold     — one Worker (BullMQ's default lock and stalled settings) that takes a job and never
 *              finishes it: the busy worker whose host is lost.
 */
import { Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { git, gitEnv, sh } from '../lib/git.js';
import { nowMs } from '../lib/stats.js';

interface RawConfig {
  mode: 'dispatch' | 'pool' | 'idle' | 'hold';
  redisUrl: string;
  prefix: string;
  queueName: string;
  /** pool: one worktree (and branch) per worker. */
  worktrees?: Array<{ path: string; branch: string }>;
  base?: string;
  agentCommand?: string;
}

const cfg = JSON.parse(process.env.BENCH_RAW_CONFIG ?? '{}') as RawConfig;
const send = (m: Record<string, unknown>) => process.send?.(m);
const workers: Worker[] = [];

function worker(processor: (job: Job) => Promise<unknown>): Worker {
  const w = new Worker(cfg.queueName, processor, {
    connection: new Redis(cfg.redisUrl, { maxRetriesPerRequest: null }),
    prefix: cfg.prefix,
    concurrency: 1,
  });
  w.on('error', (err) => process.stderr.write(`raw worker: ${err.message}\n`));
  workers.push(w);
  return w;
}

async function main(): Promise<void> {
  if (cfg.mode === 'dispatch' || cfg.mode === 'idle') {
    const w = worker(async (job) => {
      send({ type: 'called', id: job.id, at: nowMs() });
      return null;
    });
    w.on('completed', (job) => send({ type: 'completed', id: job.id }));
  } else if (cfg.mode === 'hold') {
    worker(async (job) => {
      send({ type: 'called', id: job.id, at: nowMs() });
      await new Promise(() => undefined);
    });
  } else {
    for (const wt of cfg.worktrees ?? []) {
      const w = worker(async (job) => {
        await git(wt.path, [
          'checkout',
          '--force',
          '-q',
          '-B',
          wt.branch,
          cfg.base!,
        ]);
        await git(wt.path, ['clean', '-fdq']);
        await sh(wt.path, cfg.agentCommand!, {
          ...gitEnv(),
          ISSUE_ID: String(job.data.issueId),
        });
        await git(wt.path, ['add', '-A']);
        await git(wt.path, [
          'commit',
          '-q',
          '--no-verify',
          '-m',
          `issue #${job.data.issueId}`,
        ]);
        return null;
      });
      w.on('completed', (job) => send({ type: 'completed', id: job.id }));
      w.on('failed', (job, err) =>
        send({ type: 'failed', id: job?.id, error: err.message }),
      );
    }
  }
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  send({ type: 'ready', pid: process.pid });
}

process.on('message', (m: { type: string }) => {
  if (m.type !== 'stop') return;
  void Promise.all(workers.map((w) => w.close())).finally(() =>
    process.exit(0),
  );
});

main().catch((err: Error) => {
  process.stderr.write(`raw worker: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
