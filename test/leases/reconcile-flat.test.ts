/**
 * Backlog-flat reconcile (issue 16 item 2): a periodic reconcile round sends Redis the same
 * commands and bytes with 1,000 or 10,000 queued issues (one page of the backlog per round, no
 * whole-list reads); the rolling walk still finds a single vanished job deep in the backlog; a
 * Redis that lost its data makes the next round check everything; and the first round adopts
 * foreign jobs already waiting. Counted by wrapping the recorder's own Redis client.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Queue } from 'bullmq';
import type { Redis, Command } from 'ioredis';
import type { Recorder } from '../../supervisor/recorder.js';
import type { Db } from '../../supervisor/store/db.js';
import type { IssueStore } from '../../supervisor/store/issues.js';
import { jobIdForIssue } from '../../contract/job.js';
import { recorderWorld } from '../helpers/recorder-world.js';

const PAGE = 500;

interface Traffic {
  commands: string[];
  bytesOut: number;
  bytesIn: number;
}

/** Counts what a client sends and gets back: every command's name, argument and reply bytes. */
function counted(redis: Redis): { traffic: () => Traffic; reset: () => void } {
  let t: Traffic = { commands: [], bytesOut: 0, bytesIn: 0 };
  const size = (v: unknown): number =>
    v === null || v === undefined
      ? 0
      : Buffer.isBuffer(v)
        ? v.length
        : Array.isArray(v)
          ? v.reduce((n: number, x) => n + size(x), 0)
          : Buffer.byteLength(String(v));
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = ((cmd: Command, stream?: unknown) => {
    t.commands.push(cmd.name);
    t.bytesOut += size(cmd.name) + size(cmd.args);
    void cmd.promise.then(
      (r) => (t.bytesIn += size(r)),
      () => undefined,
    );
    return send(cmd, stream as never);
  }) as Redis['sendCommand'];
  return {
    traffic: () => t,
    reset: () => (t = { commands: [], bytesOut: 0, bytesIn: 0 }),
  };
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Setup {
  db: Db;
  issues: IssueStore;
  recorder: Recorder;
  queue: Queue;
  redis: Redis;
  prefix: string;
  meter: ReturnType<typeof counted>;
  log: string[];
}

/** `queued` issues with their jobs in the queue, as the feeder leaves them; a recorder not started. */
async function setup(queued: number): Promise<Setup> {
  const w = recorderWorld('issues-flat', cleanups);
  const { db, issues, queue, redis, prefix, recorder, log } = w;
  const ids: number[] = [];
  db.transaction(() => {
    for (let k = 0; k < queued; k++) {
      ids.push(issues.add({ title: `queued ${k + 1}` }).id);
    }
    issues.markQueued(ids.map((id) => ({ id, jobId: jobIdForIssue(id) })));
  })();
  for (let k = 0; k < ids.length; k += 1000)
    await queue.addBulk(
      ids.slice(k, k + 1000).map((id) => ({
        name: 'issue',
        data: { issueId: id, title: `queued ${id}`, body: '' },
        opts: { jobId: jobIdForIssue(id) },
      })),
    );
  return {
    db,
    issues,
    recorder,
    queue,
    redis,
    prefix,
    meter: counted(redis),
    log,
  };
}

describe('reconcile: flat in the backlog', () => {
  it('a periodic round sends the same commands and bytes with 1,000 and 10,000 queued issues', async () => {
    const rounds: Traffic[] = [];
    for (const n of [1_000, 10_000]) {
      const s = await setup(n);
      await s.recorder.reconcile(); // the first round (full, as at start)
      s.meter.reset();
      await s.recorder.reconcile();
      rounds.push(s.meter.traffic());
    }
    const [small, large] = rounds as [Traffic, Traffic];
    expect(large.commands).toEqual(small.commands);
    expect(large.bytesOut).toBe(small.bytesOut);
    expect(large.bytesIn).toBe(small.bytesIn);
    // One page of the backlog at most (the job keys of 500 issues, ~40 bytes each).
    expect(large.bytesOut).toBeLessThan(PAGE * 60);
    expect(large.commands.filter((c) => /^(lrange|zrange)$/.test(c))).toEqual(
      [],
    );
  });

  it('the rolling walk finds a job that vanished deep in the backlog, and a Redis that lost its data is checked in full at once', async () => {
    const s = await setup(3_000);
    await s.recorder.reconcile();
    // One job deleted by hand at the end of the backlog: found within a walk of the backlog.
    await s.redis.del(`${s.prefix}:issues-flat:${jobIdForIssue(2_900)}`);
    let rounds = 0;
    while (s.issues.get(2_900)!.status === 'queued') {
      await s.recorder.reconcile();
      rounds += 1;
      expect(rounds).toBeLessThanOrEqual(3_000 / PAGE + 1);
    }
    expect(s.issues.get(2_900)!.status).toBe('open');
    expect(s.issues.counts().open).toBe(1);
    // Redis loses everything (its jobs and the epoch): the next round feeds every issue again.
    const keys = await s.redis.keys(`${s.prefix}:*`);
    await s.redis.del(...keys);
    await s.recorder.reconcile();
    expect(s.issues.counts().open).toBe(3_000);
  });

  it('the first round adopts foreign jobs already waiting, past the first page', async () => {
    const s = await setup(0);
    await s.queue.addBulk(
      Array.from({ length: PAGE + 20 }, (_, k) => ({
        name: 'foreign',
        data: { title: `foreign ${k + 1}`, body: '' },
        opts: { jobId: `ext-${k + 1}` },
      })),
    );
    await s.recorder.reconcile();
    expect(s.issues.byJobId(`ext-${PAGE + 20}`)?.status).toBe('queued');
    expect(s.issues.counts().queued).toBe(PAGE + 20);
  });
});
