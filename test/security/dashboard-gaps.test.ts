/**
 * The dashboard's rules are tested in test/dashboard/api.test.ts (token on every route including
 * the event streams and Bull Board, login cookie, CSRF, DNS rebinding, read-only with Bull Board's
 * pause and empty). This closes the gap between those examples and Bull Board's whole API: every
 * one of its write routes (taken from @bull-board/api's own route table, so a new version's new
 * routes are covered too) is refused in read-only mode, without a token, and cross-site with one,
 * and the queue is unchanged afterwards.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { Queue } from 'bullmq';
import {
  http,
  startTestDashboard,
  type TestDashboard,
} from '../dashboard/helpers.js';

const require = createRequire(import.meta.url);
const { appRoutes } = require('@bull-board/api/dist/routes.js') as {
  appRoutes: { api: Array<{ method: string; route: string | string[] }> };
};

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const TOKEN = 'gap-test-token-0123456789abcdef';

function writeRoutes(
  queueName: string,
): Array<{ method: string; path: string }> {
  const out: Array<{ method: string; path: string }> = [];
  for (const r of appRoutes.api) {
    if (r.method.toLowerCase() === 'get') continue;
    for (const route of Array.isArray(r.route) ? r.route : [r.route]) {
      const path = route
        .replace(':queueName', encodeURIComponent(queueName))
        .replace(':jobId', 'issue-1')
        .replace(':queueStatus', 'waiting')
        .replace(':schedulerId', 'sched');
      out.push({ method: r.method.toUpperCase(), path: `/queues${path}` });
    }
  }
  return out;
}

async function withJob(
  t: TestDashboard,
): Promise<{ queue: Queue; snapshot: () => Promise<string> }> {
  const queue = new Queue(t.ctx.queueName, {
    connection: t.source.redis,
    prefix: t.prefix,
  });
  cleanups.push(() => queue.close());
  await queue.add(
    'issue',
    { title: 'keep me', body: 'unchanged' },
    { jobId: 'issue-1', delay: 60_000 },
  );
  const snapshot = async () => {
    const job = await queue.getJob('issue-1');
    return JSON.stringify({
      state: await job?.getState(),
      data: job?.data,
      opts: job?.opts.priority,
      paused: await queue.isPaused(),
      counts: await queue.getJobCounts(),
    });
  };
  return { queue, snapshot };
}

describe("Bull Board's write API", () => {
  it('refuses every write route in read-only mode and leaves the queue as it was', async () => {
    const t = await startTestDashboard({ readOnly: true });
    cleanups.push(() => t.close());
    const { snapshot } = await withJob(t);
    const before = await snapshot();
    const routes = writeRoutes(t.ctx.queueName);
    expect(routes.length).toBeGreaterThanOrEqual(20);
    for (const { method, path } of routes) {
      const r = await http(method, `${t.url}${path}`, {
        headers: { origin: t.url },
        body: { data: { title: 'x' }, name: 'x', concurrency: 1 },
      });
      expect(r.status, `${method} ${path}`).toBe(403);
      expect(r.json().code, `${method} ${path}`).toBe(
        'ERR_DASHBOARD_READ_ONLY',
      );
    }
    expect(await snapshot()).toBe(before);
  });

  it('with a token: refuses every write route without it (401) and cross-site with it (403)', async () => {
    const t = await startTestDashboard({ token: TOKEN });
    cleanups.push(() => t.close());
    const { snapshot } = await withJob(t);
    const before = await snapshot();
    for (const { method, path } of writeRoutes(t.ctx.queueName)) {
      const anonymous = await http(method, `${t.url}${path}`, {
        headers: { origin: t.url },
        body: {},
      });
      expect(anonymous.status, `${method} ${path}`).toBe(401);
      const crossSite = await http(method, `${t.url}${path}`, {
        headers: {
          authorization: `Bearer ${TOKEN}`,
          origin: 'https://evil.example',
        },
        body: {},
      });
      expect(crossSite.status, `${method} ${path}`).toBe(403);
      expect(crossSite.json().code).toBe('ERR_DASHBOARD_CSRF');
    }
    expect(await snapshot()).toBe(before);
  });
});
