/**
 * A failed attempt is reported twice: by its runner on the event stream (why: the kind, e.g.
 * `disk`, and the agent's exit code) and by BullMQ's `failed` event for the job. The recorder
 * reads the two apart, so under load BullMQ's may come first; the run must still end with the
 * runner's account, not the generic `job-failed` (seen in CI: a disk stop recorded as
 * `job-failed`).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { supervisorKeys } from '../../contract/job.js';
import { EventPublisher } from '../../agent-runner/event-publisher.js';
import { waitFor } from '../helpers/cli.js';
import { claimedIssue, recorderWorld } from '../helpers/recorder-world.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("a failed attempt's kind", () => {
  it("is the runner's even when BullMQ's failed event is recorded first", async () => {
    const w = recorderWorld('issues-kind-order', cleanups);
    const { issues, runs, queue, prefix, recorder } = w;
    // A runner takes the job; the job fails in BullMQ before its runner's report is read.
    const { id, job, token } = await claimedIssue(
      w,
      'fills the disk',
      cleanups,
    );
    const error =
      'agent stopped: its files took 41 MiB, past diskPerAgent (16 MiB)';
    await job.moveToFailed(new Error(error), token, false);
    // The failed set is read by the reconcile too (the queue events may be still connecting).
    await recorder.reconcile();
    const early = await waitFor(
      () => {
        const r = runs.forIssue(id).at(-1);
        return r?.outcome === 'failed' ? r : false;
      },
      { what: "the job's failure recorded", timeoutMs: 30_000 },
    );
    expect(early.errorKind).toBe('job-failed');
    expect(issues.get(id)!.status).toBe('failed');

    // The runner's report arrives: its kind and exit code replace the generic ones.
    const events = new EventPublisher(
      w.redis,
      supervisorKeys(prefix, queue.name).events,
    );
    await events.publish({
      type: 'attempt-failed',
      jobId: job.id!,
      attempt: early.attempt,
      agentId: 'agent-001',
      at: Date.now(),
      error,
      kind: 'disk',
      exitCode: 143,
    });
    const run = await waitFor(
      () => {
        const r = runs.get(job.id!, early.attempt);
        return r?.errorKind === 'disk' ? r : false;
      },
      { what: "the runner's kind on the run", timeoutMs: 30_000 },
    );
    expect(run.exitCode).toBe(143);
    expect(run.outcome).toBe('failed');
    expect(issues.get(id)!.status).toBe('failed');
  });
});
