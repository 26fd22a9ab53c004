import { afterEach, describe, expect, it } from 'vitest';
import { appendFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { SupervisorError } from '../../supervisor/errors.js';
import { getSetting } from '../../supervisor/store/db.js';
import { startDashboard } from '../../dashboard/server.js';
import { stateSource } from '../../dashboard/source.js';
import { waitFor } from '../helpers/cli.js';
import {
  http,
  readSse,
  startTestDashboard,
  type TestDashboard,
} from './helpers.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function dashboard(
  o: Parameters<typeof startTestDashboard>[0] = {},
): Promise<TestDashboard> {
  const t = await startTestDashboard(o);
  cleanups.push(() => t.close());
  return t;
}

async function csrfOf(
  t: TestDashboard,
  headers: Record<string, string> = {},
): Promise<string> {
  const r = await http('GET', `${t.url}/api/session`, { headers });
  expect(r.status).toBe(200);
  return r.json().csrfToken as string;
}

describe('dashboard API on loopback without a token', () => {
  it('serves the status, the issues in queue order, and the page with titles escaped', async () => {
    const t = await dashboard();
    t.ctx.issues.add({ title: 'low one', priority: 'low' });
    t.ctx.issues.add({
      title: '<script>window.__pwned = 1</script>',
      priority: 'high',
    });
    t.ctx.issues.add({
      title: '<img src=x onerror="window.__pwned = 2">',
      priority: 'urgent',
    });

    const status = await http('GET', `${t.url}/api/status`);
    expect(status.status).toBe(200);
    expect(status.headers['content-type']).toMatch(/application\/json/);
    const s = status.json();
    expect(s.pending.items.map((i: any) => i.priority)).toEqual([
      'urgent',
      'high',
      'low',
    ]);
    expect(s.platform).toMatchObject({ maxAgents: 10 });
    expect(s.supervisor.running).toBe(false);

    const issues = (await http('GET', `${t.url}/api/issues`)).json();
    expect(issues.pending.map((i: any) => i.id)).toEqual([3, 2, 1]);

    const page = await http('GET', `${t.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers['content-security-policy']).toMatch(
      /script-src 'self'/,
    );
    expect(page.headers['x-frame-options']).toBe('DENY');
    expect(page.text).toContain(
      '&lt;script&gt;window.__pwned = 1&lt;/script&gt;',
    );
    expect(page.text).toContain(
      '&lt;img src=x onerror=&quot;window.__pwned = 2&quot;&gt;',
    );
    expect(page.text).not.toContain('<script>window.__pwned');
    expect(page.text).not.toContain('<img src=x');
    expect(page.text).toContain('Open Issues Queue');
  });

  it('restarts one agent by POST with the CSRF token; refuses unknown agents and cross-site writes', async () => {
    const t = await dashboard();
    const csrf = await csrfOf(t);
    const origin = t.url;
    const post = (id: string, headers: Record<string, string>) =>
      http('POST', `${t.url}/api/agents/${id}/restart`, { body: {}, headers });
    const ok = { origin, 'x-supervisor-csrf': csrf };
    t.ctx.slots.ensure(1, '/tmp/wt', 'agent/001');
    const notRunning = await post('agent-001', ok);
    expect(notRunning.status).toBe(409);
    expect(notRunning.json().code).toBe('ERR_SUP_NOT_RUNNING');
    t.fakeRunning();
    expect((await post('agent-001', { origin })).status).toBe(403);
    expect(
      (
        await post('agent-001', {
          origin: 'https://evil.example',
          'x-supervisor-csrf': csrf,
        })
      ).status,
    ).toBe(403);
    const unknown = await post('agent-007', ok);
    expect(unknown.status).toBe(400);
    expect(unknown.json()).toMatchObject({
      code: 'ERR_SUP_USAGE',
      hint: expect.stringContaining('agent-001'),
    });
    expect((await post('nope', ok)).json().code).toBe('ERR_SUP_USAGE');
    expect(getSetting(t.ctx.db, 'restart_requests')).toBeUndefined();
    const r = await post('agent-001', ok);
    expect(r.status).toBe(202);
    expect(r.json()).toEqual({ agentId: 'agent-001', restartRequested: true });
    // What the running supervisor's scaler picks up.
    expect(
      Object.keys(JSON.parse(getSetting(t.ctx.db, 'restart_requests')!)),
    ).toEqual(['agent-001']);
    expect(
      (await http('GET', `${t.url}/api/agents/agent-001/restart`)).status,
    ).toBe(405);
  });

  it('scales by POST with the CSRF token, and refuses cross-site, token-less and GET writes', async () => {
    const t = await dashboard();
    const csrf = await csrfOf(t);
    const origin = t.url;
    const post = (body: object, headers: Record<string, string>) =>
      http('POST', `${t.url}/api/scale`, { body, headers });

    // No supervisor running: the dashboard says so instead of writing a count nobody reads.
    const notRunning = await post(
      { count: 2 },
      { 'x-supervisor-csrf': csrf, origin },
    );
    expect(notRunning.status).toBe(409);
    expect(notRunning.json()).toMatchObject({
      code: 'ERR_SUP_NOT_RUNNING',
      hint: expect.stringContaining('supervisor start'),
    });

    t.fakeRunning();
    const noToken = await post({ count: 2 }, { origin });
    expect(noToken.status).toBe(403);
    expect(noToken.json().code).toBe('ERR_DASHBOARD_CSRF');
    const wrongToken = await post(
      { count: 2 },
      { origin, 'x-supervisor-csrf': 'nope' },
    );
    expect(wrongToken.status).toBe(403);
    const crossSite = await post(
      { count: 2 },
      { origin: 'https://evil.example', 'x-supervisor-csrf': csrf },
    );
    expect(crossSite.status).toBe(403);
    const crossSiteFetch = await post(
      { count: 2 },
      { 'sec-fetch-site': 'cross-site', 'x-supervisor-csrf': csrf },
    );
    expect(crossSiteFetch.status).toBe(403);
    expect(
      (await post({ count: 2 }, { origin: 'null', 'x-supervisor-csrf': csrf }))
        .status,
    ).toBe(403);
    expect(getSetting(t.ctx.db, 'desired_agents')).toBeUndefined();

    const nullOrigin = await post(
      { count: 1 },
      {
        origin: 'null',
        'sec-fetch-site': 'same-origin',
        'x-supervisor-csrf': csrf,
      },
    );
    expect(nullOrigin.status).toBe(200);
    const ok = await post({ count: 2 }, { origin, 'x-supervisor-csrf': csrf });
    expect(ok.status).toBe(200);
    expect(ok.json()).toEqual({ desiredAgents: 2 });
    expect(getSetting(t.ctx.db, 'desired_agents')).toBe('2');

    const viaGet = await http('GET', `${t.url}/api/scale?count=3`);
    expect(viaGet.status).toBe(405);
    expect(viaGet.headers.allow).toBe('POST');
    expect(
      (await post({ count: 'three' }, { origin, 'x-supervisor-csrf': csrf }))
        .status,
    ).toBe(400);
    const tooMany = await post(
      { count: 11 },
      { origin, 'x-supervisor-csrf': csrf },
    );
    expect(tooMany.status).toBe(400);
    expect(tooMany.json().code).toBe('ERR_SUP_SCALE_LIMIT');
    expect((await post({}, { origin, 'x-supervisor-csrf': csrf })).status).toBe(
      400,
    );
    expect(
      (
        await http('POST', `${t.url}/api/scale`, {
          body: '{not json',
          headers: {
            'content-type': 'application/json',
            origin,
            'x-supervisor-csrf': csrf,
          },
        })
      ).status,
    ).toBe(400);
    expect(getSetting(t.ctx.db, 'desired_agents')).toBe('2');
  });

  it('answers only to loopback host names (no DNS rebinding)', async () => {
    const t = await dashboard();
    const r = await http('GET', `${t.url}/api/status`, {
      headers: { host: `evil.example:${t.dash.port}` },
    });
    expect(r.status).toBe(403);
    expect(
      (
        await http('GET', `${t.url}/api/status`, {
          headers: { host: `localhost:${t.dash.port}` },
        })
      ).status,
    ).toBe(200);
  });

  it('builds no snapshot while nothing changes, however long a page stays open', async () => {
    const t = await dashboard();
    let pushes = 0;
    const stop = t.dash.hub.subscribe(() => (pushes += 1));
    try {
      // Heartbeat pushes arrive (the page knows it is live) ...
      await waitFor(() => pushes >= 6, { timeoutMs: 60_000, what: '6 pushes' });
      // ... but they resend the last snapshot: a build for the first push and a refresh now and
      // then for what only Redis knows, where a timer-driven hub built two per push.
      expect(t.dash.hub.builds * 2).toBeLessThanOrEqual(pushes);
      const before = t.dash.hub.builds;
      t.ctx.issues.add({ title: 'a change' });
      await waitFor(() => t.dash.hub.builds > before, {
        timeoutMs: 30_000,
        what: 'a build after the change',
      });
    } finally {
      stop();
    }
  });

  it('pages /api/issues newest first with a cursor, a status and a since filter', async () => {
    const t = await dashboard();
    for (let k = 1; k <= 5; k++) t.ctx.issues.add({ title: `i${k}` });
    t.ctx.issues.update(2, { status: 'done' });
    const first = (await http('GET', `${t.url}/api/issues?limit=2`)).json();
    expect(first.items.map((i: any) => i.id)).toEqual([5, 4]);
    expect(first.next).toBe(4);
    expect(first.counts).toMatchObject({ open: 4, done: 1 });
    const second = (
      await http('GET', `${t.url}/api/issues?limit=2&before=${first.next}`)
    ).json();
    expect(second.items.map((i: any) => i.id)).toEqual([3, 2]);
    const last = (
      await http('GET', `${t.url}/api/issues?limit=2&before=${second.next}`)
    ).json();
    expect(last.items.map((i: any) => i.id)).toEqual([1]);
    expect(last.next).toBeNull();
    const done = (await http('GET', `${t.url}/api/issues?status=done`)).json();
    expect(done.items.map((i: any) => i.id)).toEqual([2]);
    const since = (
      await http('GET', `${t.url}/api/issues?since=${Date.now() + 60_000}`)
    ).json();
    expect(since.items).toEqual([]);
    const bad = await http('GET', `${t.url}/api/issues?status=weird`);
    expect(bad.status).toBe(400);
  });

  it('pushes status snapshots by SSE with retry and ids, on a timer and on change', async () => {
    const t = await dashboard();
    // Three snapshots while nothing changes: pushed on a timer (its period is not asserted here).
    const { status, events, raw } = await readSse(`${t.url}/api/events`, {
      until: (ev) => ev.length >= 3,
    });
    expect(status).toBe(200);
    expect(raw.startsWith('retry: 2000\n\n')).toBe(true);
    expect(events.map((e) => e.event)).toEqual(['status', 'status', 'status']);
    const ids = events.map((e) => Number(e.id));
    expect(ids[1]).toBeGreaterThan(ids[0]!);
    const first = JSON.parse(events[0]!.data);
    expect(first.status.pending.total).toBe(0);
    expect(Object.keys(first.html).sort()).toEqual([
      'agents',
      'queue',
      'resources',
      'results',
      'review',
      'summary',
    ]);

    // A change shows up in the next push.
    t.ctx.issues.add({ title: 'fresh <b>issue</b>' });
    const after = await readSse(`${t.url}/api/events`, {
      headers: { 'last-event-id': events[2]!.id! },
      until: (ev) =>
        ev.some((e) => JSON.parse(e.data).status.pending.total === 1),
    });
    const last = JSON.parse(after.events[after.events.length - 1]!.data);
    expect(last.html.queue).toContain('fresh &lt;b&gt;issue&lt;/b&gt;');
  });

  it('tails an agent log over SSE: the last N lines first, then new lines, resuming from Last-Event-ID', async () => {
    const t = await dashboard();
    const file = join(t.ctx.paths.logDir, 'agent-001.log');
    mkdirSync(t.ctx.paths.logDir, { recursive: true });
    writeFileSync(file, 'one\ntwo\nthree <script>x</script>\n');
    const first = await readSse(
      `${t.url}/api/agents/agent-001/logs/stream?lines=2`,
      {
        until: (ev) =>
          ev.some((e) => e.event === 'lines' && e.data.includes('four')),
        timeoutMs: 5000,
        onOpen: () => setTimeout(() => appendFileSync(file, 'four\n'), 300),
      },
    );
    const batches = first.events.filter((e) => e.event === 'lines');
    expect(JSON.parse(batches[0]!.data)).toEqual([
      'two',
      'three <script>x</script>',
    ]);
    expect(JSON.parse(batches[batches.length - 1]!.data)).toEqual(['four']);
    const resumeAt = batches[0]!.id!;
    expect(Number(resumeAt)).toBe(
      'one\ntwo\nthree <script>x</script>\n'.length,
    );

    // Reconnecting with the first batch's id gets exactly what came after it.
    const resumed = await readSse(
      `${t.url}/api/agents/agent-001/logs/stream?lines=2`,
      {
        headers: { 'last-event-id': resumeAt },
        until: (ev) => ev.some((e) => e.event === 'lines'),
      },
    );
    expect(
      JSON.parse(resumed.events.find((e) => e.event === 'lines')!.data),
    ).toEqual(['four']);

    const json = (
      await http('GET', `${t.url}/api/agents/agent-001/logs?lines=1`)
    ).json();
    expect(json.lines).toEqual(['four']);
    expect(
      (await http('GET', `${t.url}/api/agents/..%2Fetc/logs`)).status,
    ).toBe(400);
    expect(
      (await http('GET', `${t.url}/api/agents/agent-001/logs?lines=-1`)).status,
    ).toBe(400);
    rmSync(file);
  });

  it('exposes Prometheus metrics from the snapshot and the run history', async () => {
    const t = await dashboard();
    const a = t.ctx.issues.add({ title: 'a' });
    const b = t.ctx.issues.add({ title: 'b' });
    t.ctx.runs.upsert(a.id, `issue-${a.id}`, 1, {
      agent: 'agent-001',
      startedAt: 1000,
      finishedAt: 4000,
      outcome: 'succeeded',
      durationMs: 3000,
    });
    t.ctx.runs.upsert(b.id, `issue-${b.id}`, 1, {
      agent: 'agent-002',
      startedAt: 1000,
      finishedAt: 91_000,
      outcome: 'failed',
    });
    t.ctx.runs.upsert(b.id, `issue-${b.id}`, 2, {
      agent: 'agent-002',
      startedAt: 1000,
      outcome: 'running',
    });
    const r = await http('GET', `${t.url}/metrics`);
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/text\/plain; version=0.0.4/);
    const m = r.text;
    expect(m).toContain('supervisor_agents{state="working"} 0');
    expect(m).toContain('supervisor_issues{status="open"} 2');
    expect(m).toContain('supervisor_queue_jobs{state="waiting"} 0');
    expect(m).toContain('supervisor_runs_total{outcome="succeeded"} 1');
    expect(m).toContain('supervisor_runs_total{outcome="failed"} 1');
    // Counters only count: a run in progress is not an outcome (issue 15).
    expect(m).not.toContain('outcome="running"');
    expect(m).toContain('supervisor_runs_started_total 3');
    expect(m).toContain('supervisor_queue_oldest_waiting_seconds ');
    expect(m).toContain(
      'supervisor_run_duration_seconds_bucket{le="5",outcome="succeeded"} 1',
    );
    expect(m).toContain(
      'supervisor_run_duration_seconds_bucket{le="60",outcome="failed"} 0',
    );
    expect(m).toContain(
      'supervisor_run_duration_seconds_bucket{le="120",outcome="failed"} 1',
    );
    expect(m).toContain(
      'supervisor_run_duration_seconds_sum{outcome="failed"} 90',
    );
    expect(m).toMatch(/# TYPE supervisor_lease_losses_total counter/);
    expect(m).toContain('supervisor_up 0');
    expect(m).toContain('supervisor_redis_up 1');
  });

  it('serves Bull Board under /queues for the repository queue', async () => {
    const t = await dashboard();
    const ui = await http('GET', `${t.url}/queues/`);
    expect(ui.status).toBe(200);
    expect(ui.text).toContain('<base href="/queues/"');
    const api = (await http('GET', `${t.url}/queues/api/queues`)).json();
    expect(api.queues.map((q: any) => q.name)).toEqual([t.ctx.queueName]);
    expect(api.queues[0].readOnlyMode).toBe(false);
  });

  it('refuses a configured port that is taken, naming it, instead of serving on another', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise<void>((r) => blocker.close(() => r())));
    const taken = (blocker.address() as { port: number }).port;
    const err = await dashboard({ port: taken }).then(
      () => undefined,
      (e: unknown) => e as SupervisorError,
    );
    expect(err).toBeInstanceOf(SupervisorError);
    expect(err!.message).toBe(
      `the dashboard port 127.0.0.1:${taken} is taken by another program`,
    );
    expect(err!.hint).toMatch(/--dashboard-port/);
  });
});

describe('dashboard with a token', () => {
  const token = 'correct-horse-battery-staple-42';
  const routes = [
    '/',
    '/assets/app.js',
    '/api/status',
    '/api/issues',
    '/api/session',
    '/api/agents/agent-001/logs',
    '/metrics',
    '/queues/',
    '/queues/api/queues',
    '/no-such-page',
  ];

  it('requires it on every route, including SSE and Bull Board', async () => {
    const t = await dashboard({ token });
    for (const path of routes) {
      const r = await http('GET', `${t.url}${path}`);
      expect(r.status, path).toBe(401);
      const wrong = await http('GET', `${t.url}${path}`, {
        headers: { authorization: 'Bearer not-the-token-at-all' },
      });
      expect(wrong.status, path).toBe(401);
    }
    for (const path of ['/api/events', '/api/agents/agent-001/logs/stream']) {
      const r = await readSse(`${t.url}${path}`, {
        until: () => false,
        timeoutMs: 3000,
      });
      expect(r.status, path).toBe(401);
    }
    for (const path of routes.filter((p) => p !== '/no-such-page')) {
      const r = await http('GET', `${t.url}${path}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(r.status, path).toBe(200);
    }
    const sse = await readSse(`${t.url}/api/events`, {
      headers: { authorization: `Bearer ${token}` },
      until: (ev) => ev.length >= 1,
    });
    expect(sse.status).toBe(200);
    // A browser that is not logged in gets the login form.
    const page = await http('GET', `${t.url}/`, {
      headers: { accept: 'text/html' },
    });
    expect(page.status).toBe(401);
    expect(page.text).toContain('name="token"');
  });

  it('logs in with a form that sets an HttpOnly SameSite=Lax cookie; cookie writes still need the CSRF token', async () => {
    const t = await dashboard({ token });
    t.fakeRunning();
    const form = (v: string) =>
      http('POST', `${t.url}/login`, {
        body: `token=${encodeURIComponent(v)}`,
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          origin: t.url,
        },
      });
    const bad = await form('wrong-token-wrong-token');
    expect(bad.status).toBe(401);
    expect(bad.headers['set-cookie']).toBeUndefined();
    const crossSite = await http('POST', `${t.url}/login`, {
      body: `token=${token}`,
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        origin: 'https://evil.example',
      },
    });
    expect(crossSite.status).toBe(403);
    const good = await form(token);
    expect(good.status).toBe(303);
    expect(good.headers.location).toBe('/');
    const cookie = String(good.headers['set-cookie']);
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Lax/);
    expect(cookie).not.toContain(token);
    const session = cookie.split(';')[0]!;
    expect(
      (
        await http('GET', `${t.url}/api/status`, {
          headers: { cookie: session },
        })
      ).status,
    ).toBe(200);
    expect(
      (
        await http('GET', `${t.url}/queues/api/queues`, {
          headers: { cookie: session },
        })
      ).status,
    ).toBe(200);
    expect(
      (
        await http('GET', `${t.url}/api/status`, {
          headers: { cookie: 'supervisor_session=forged' },
        })
      ).status,
    ).toBe(401);

    const noCsrf = await http('POST', `${t.url}/api/scale`, {
      body: { count: 1 },
      headers: { cookie: session, origin: t.url },
    });
    expect(noCsrf.status).toBe(403);
    const csrf = await csrfOf(t, { cookie: session });
    const withCsrf = await http('POST', `${t.url}/api/scale`, {
      body: { count: 1 },
      headers: { cookie: session, origin: t.url, 'x-supervisor-csrf': csrf },
    });
    expect(withCsrf.status).toBe(200);
    // A bearer header is never sent by a browser on its own: no CSRF token needed.
    const bearer = await http('POST', `${t.url}/api/scale`, {
      body: { count: 3 },
      headers: { authorization: `Bearer ${token}` },
    });
    expect(bearer.status).toBe(200);
    expect(getSetting(t.ctx.db, 'desired_agents')).toBe('3');
    const out = await http('POST', `${t.url}/logout`, {
      headers: { cookie: session, origin: t.url },
    });
    expect(out.status).toBe(303);
    expect(String(out.headers['set-cookie'])).toMatch(/Max-Age=0/);
  });

  it('binds a non-loopback address only with a token', async () => {
    const t = await dashboard({ token, host: '0.0.0.0' });
    expect(t.dash.host).toBe('0.0.0.0');
    expect(
      (
        await http('GET', `${t.url}/api/status`, {
          headers: { authorization: `Bearer ${token}` },
        })
      ).status,
    ).toBe(200);
  });
});

describe('read-only dashboard', () => {
  it('refuses writes (403 POST, 405 other methods) and makes Bull Board read-only', async () => {
    const t = await dashboard({ readOnly: true });
    t.fakeRunning();
    const csrf = await csrfOf(t);
    const scale = await http('POST', `${t.url}/api/scale`, {
      body: { count: 1 },
      headers: { origin: t.url, 'x-supervisor-csrf': csrf },
    });
    expect(scale.status).toBe(403);
    expect(scale.json().code).toBe('ERR_DASHBOARD_READ_ONLY');
    expect((await http('GET', `${t.url}/api/scale`)).status).toBe(405);
    expect(
      (await http('PUT', `${t.url}/api/scale`, { body: { count: 1 } })).status,
    ).toBe(405);
    expect(getSetting(t.ctx.db, 'desired_agents')).toBeUndefined();
    t.ctx.slots.ensure(1, '/tmp/wt', 'agent/001');
    const restart = await http(
      'POST',
      `${t.url}/api/agents/agent-001/restart`,
      {
        body: {},
        headers: { origin: t.url, 'x-supervisor-csrf': csrf },
      },
    );
    expect(restart.status).toBe(403);
    expect(restart.json().code).toBe('ERR_DASHBOARD_READ_ONLY');
    expect(getSetting(t.ctx.db, 'restart_requests')).toBeUndefined();
    expect(
      (
        await http('PUT', `${t.url}/queues/api/queues/pause`, {
          headers: { origin: t.url },
        })
      ).status,
    ).toBe(403);
    expect(
      (
        await http(
          'PUT',
          `${t.url}/queues/api/queues/${t.ctx.queueName}/empty`,
          { headers: { origin: t.url } },
        )
      ).status,
    ).toBe(403);
    const board = (await http('GET', `${t.url}/queues/api/queues`)).json();
    expect(board.queues[0]).toMatchObject({
      readOnlyMode: true,
      allowRetries: false,
    });
    const page = await http('GET', `${t.url}/`);
    expect(page.text).toMatch(
      /<button type="button" id="start" class="btn btn-primary" disabled>/,
    );
    expect(page.text).toContain('read-only');
  });
});

describe('binding', () => {
  it('refuses a non-loopback address without a token, with a hint', async () => {
    const t = await dashboard();
    const err = await startDashboard(t.source, {
      host: '0.0.0.0',
      port: 0,
      readOnly: false,
      log: () => undefined,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SupervisorError);
    expect((err as SupervisorError).code).toBe('ERR_SUP_CONFIG');
    expect((err as SupervisorError).hint).toMatch(/SUPERVISOR_DASHBOARD_TOKEN/);
    const again = await startDashboard(
      await stateSource(t.ctx).then((s) => (cleanups.push(() => s.close()), s)),
      { host: '192.0.2.10', port: 0, readOnly: false, log: () => undefined },
    ).catch((e: unknown) => e);
    expect((again as SupervisorError).code).toBe('ERR_SUP_CONFIG');
  });
});
