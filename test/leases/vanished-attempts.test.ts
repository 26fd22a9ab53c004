/**
 * After Redis loses its data, a runner may still hold an attempt of a vanished job whose claim
 * was lost with the event stream (published, not yet read). The job that replaces it must number
 * its attempts past any such attempt, or the old runner's late report (lease lost, failed) lands
 * on the new job's run of the same number: an issue `done` without a succeeded run, an agent
 * start without a run row (the chaos harness's finding).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { JobDataSchema, jobIdForIssue } from '../../contract/job.js';
import { Feeder } from '../../supervisor/feeder.js';
import { VANISHED_ATTEMPT_GAP } from '../../supervisor/recorder/reconcile.js';
import { recorderWorld } from '../helpers/recorder-world.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('an issue fed again after Redis lost its job', () => {
  it("numbers the new job's attempts past a gap, so an unrecorded attempt of the vanished job never shares a run", async () => {
    const { issues, runs, queue, redis, prefix, recorder } = recorderWorld(
      'issues-vanished',
      cleanups,
    );
    const feeder = new Feeder(issues, runs, queue, {
      attempts: 2,
      backoffMs: 100,
    });
    const offsetOf = async (id: number) =>
      JobDataSchema.parse((await queue.getJob(jobIdForIssue(id)))!.data)
        .attemptOffset;

    const { id } = issues.add({ title: 'worked when Redis lost its data' });
    expect(await feeder.tick()).toBe(1);
    expect(await offsetOf(id)).toBe(0);
    await recorder.reconcile(); // the first round, as at start
    // A runner takes attempt 1; its claim is still in the stream when Redis loses everything.
    const keys = await redis.keys(`${prefix}:*`);
    await redis.del(...keys);
    await recorder.reconcile();
    expect(issues.get(id)!.status).toBe('open');
    expect(await feeder.tick()).toBe(1);
    // The new job's first attempt is past the gap: the old runner's attempt 1 (and any other
    // whose claim was lost) can report without touching a run of the new job.
    expect(await offsetOf(id)).toBeGreaterThanOrEqual(VANISHED_ATTEMPT_GAP);
    // Losing it again moves the floor again, past the first gap.
    await redis.del(...(await redis.keys(`${prefix}:*`)));
    await recorder.reconcile();
    expect(await feeder.tick()).toBe(1);
    expect(await offsetOf(id)).toBeGreaterThanOrEqual(2 * VANISHED_ATTEMPT_GAP);
  });
});
