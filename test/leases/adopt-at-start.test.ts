/**
 * A foreign job added while the supervisor starts is adopted: after the first reconcile round
 * looked, only its `added` event can bring it in (periodic rounds do not adopt), so the event
 * reader must start from before that round, not from "new events only" at its first read. A CI
 * run once lost such a job that way: the runner that took it waited for its issue id for good.
 * Here the event reader's first read is held back until the job has been added.
 */
import { afterEach, expect, it } from 'vitest';
import type { Command, Redis } from 'ioredis';
import { supervisorKeys } from '../../contract/job.js';
import { recorderWorld } from '../helpers/recorder-world.js';
import { waitFor } from '../helpers/cli.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

it('a foreign job added between the first reconcile and the first event read is adopted', async () => {
  const w = recorderWorld('adopt-at-start', cleanups);
  let added: Promise<unknown> | undefined;
  // Connections the recorder makes after its first round (the event readers): their stream
  // reads wait until a producer has added a job, as a slow first read on a busy machine would.
  const duplicate = w.redis.duplicate.bind(w.redis);
  w.redis.duplicate = ((...args: Parameters<Redis['duplicate']>) => {
    const conn = duplicate(...args);
    added ??= w.queue.add(
      'foreign',
      { title: 'added while the supervisor starts', body: '' },
      { jobId: 'ext-start' },
    );
    const send = conn.sendCommand.bind(conn);
    conn.sendCommand = ((cmd: Command, stream?: unknown) => {
      if (cmd.name !== 'xread') return send(cmd, stream as never);
      added!.then(() => send(cmd, stream as never)).catch(() => undefined);
      return cmd.promise;
    }) as Redis['sendCommand'];
    return conn;
  }) as Redis['duplicate'];
  cleanups.push(() => w.recorder.close());
  await w.recorder.start();
  expect(added).toBeDefined();
  await added;
  const issue = await waitFor(() => w.issues.byJobId('ext-start'), {
    timeoutMs: 15_000,
    what: 'the foreign job adopted',
  });
  expect(issue).toMatchObject({
    title: 'added while the supervisor starts',
    status: 'queued',
  });
  const keys = supervisorKeys(w.prefix, w.queue.name);
  expect(await w.redis.hget(keys.adopted, 'ext-start')).toBe(String(issue.id));
});
