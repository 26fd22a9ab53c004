import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import type { JobResult } from '../../contract/job.js';
import { Feeder } from '../../supervisor/feeder.js';
import { git } from './repo.js';
import { Recorder, type RecorderOptions } from '../../supervisor/recorder.js';
import { openDatabase, type Db } from '../../supervisor/store/db.js';
import { IssueStore } from '../../supervisor/store/issues.js';
import { RunStore } from '../../supervisor/store/runs.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

export interface RecorderWorld {
  dir: string;
  db: Db;
  issues: IssueStore;
  runs: RunStore;
  recorder: Recorder;
  queue: Queue;
  redis: Redis;
  prefix: string;
  log: string[];
}

/**
 * A recorder on a SQLite file of its own and a queue under a random prefix on the real Redis,
 * not started (a test calls `reconcile()` itself); `cleanups` gets what removes it all.
 */
export function recorderWorld(
  queueName: string,
  cleanups: Array<() => unknown>,
  options: Partial<RecorderOptions> = {},
): RecorderWorld {
  const dir = mkdtempSync(join(tmpdir(), 'sup-recorder-'));
  const db = openDatabase(join(dir, 'supervisor.db'));
  const issues = new IssueStore(db);
  const runs = new RunStore(db);
  const prefix = `rec${randomBytes(4).toString('hex')}`;
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const queue = new Queue(queueName, {
    connection: new Redis(REDIS_URL, { maxRetriesPerRequest: null }),
    prefix,
  });
  cleanups.push(async () => {
    await queue.obliterate({ force: true }).catch(() => undefined);
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    await queue.close();
    redis.disconnect();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const log: string[] = [];
  const recorder = new Recorder({
    db,
    issues,
    runs,
    queue,
    redis,
    prefix,
    repoRoot: dir,
    reconcileIntervalMs: 60_000,
    killAgent: async () => false,
    log: (msg) => log.push(msg),
    ...options,
  });
  return { dir, db, issues, runs, recorder, queue, redis, prefix, log };
}

/**
 * One issue fed as the feeder does, the recorder started, and its job claimed by a bare BullMQ
 * worker standing in for a runner (the caller completes or fails it with `token`).
 */
export async function claimedIssue(
  w: RecorderWorld,
  title: string,
  cleanups: Array<() => unknown>,
): Promise<{ id: number; job: Job; token: string }> {
  const feeder = new Feeder(w.issues, w.runs, w.queue, {
    attempts: 1,
    backoffMs: 100,
  });
  const { id } = w.issues.add({ title });
  if ((await feeder.tick()) !== 1) throw new Error('the issue was not fed');
  await w.recorder.start();
  cleanups.push(() => w.recorder.close());
  const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const worker = new Worker(w.queue.name, null, {
    connection,
    prefix: w.prefix,
    autorun: false,
  });
  cleanups.push(async () => {
    await worker.close();
    connection.disconnect();
  });
  const token = 'runner-token';
  const job = await worker.getNextJob(token);
  if (!job) throw new Error('no job to claim');
  return { id, job, token };
}

/** The world's directory made a git repository with one commit; returns that commit. */
export function committedRepo(w: RecorderWorld): string {
  git(w.dir, 'init', '-q', '-b', 'main');
  writeFileSync(join(w.dir, 'a.txt'), 'a\n');
  git(w.dir, 'add', 'a.txt');
  git(w.dir, 'commit', '-qm', 'a');
  return git(w.dir, 'rev-parse', 'HEAD');
}

/** A runner's result of attempt 1 that committed `sha` (on base `sha`). */
export function resultAt(sha: string): JobResult {
  return {
    agentId: 'agent-001',
    attempt: 1,
    exitCode: 0,
    baseSha: sha,
    commitSha: sha,
    filesChanged: 1,
    insertions: 1,
    deletions: 0,
    durationMs: 5,
    logPath: '/dev/null',
    startedAt: Date.now() - 5,
    finishedAt: Date.now(),
  };
}
