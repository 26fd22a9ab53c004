/**
 * JSON output as a contract (issue 15): every `--json` command and the HTTP API answer match the
 * JSON Schemas shipped in schemas/, checked on REAL output — commands spawned on a real
 * repository, a real supervisor with a scripted agent, the dashboard over HTTP.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import { ISSUE_STATUSES } from '../../supervisor/store/issues.js';
import { RUN_OUTCOMES } from '../../supervisor/store/runs.js';
import {
  ROOT,
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
} from '../helpers/cli.js';
import { tempRepo } from '../helpers/repo.js';
import { http, startTestDashboard } from '../dashboard/helpers.js';

const DIR = join(ROOT, 'schemas');
const BASE = 'https://agent-supervisor.dev/schemas/';
const ajv = new Ajv({ allErrors: true, strict: true });
const schemas = new Map<string, ValidateFunction>();

beforeAll(() => {
  for (const f of readdirSync(DIR).filter((f) => f.endsWith('.json')))
    ajv.addSchema(JSON.parse(readFileSync(join(DIR, f), 'utf8')));
  for (const f of readdirSync(DIR).filter((f) => f !== 'definitions.json'))
    schemas.set(f.replace(/\.json$/, ''), ajv.getSchema(BASE + f)!);
});

/** Asserts `value` matches schemas/<name>.json, with ajv's errors as the message. */
function check(name: string, value: unknown): void {
  const validate = schemas.get(name);
  expect(validate, `schemas/${name}.json`).toBeDefined();
  const ok = validate!(value);
  expect(
    ok,
    `${name}: ${ajv.errorsText(validate!.errors)}\n${JSON.stringify(value).slice(0, 2000)}`,
  ).toBe(true);
}

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('JSON Schemas', () => {
  it('compile, and name the statuses and outcomes the code has', () => {
    expect(schemas.size).toBeGreaterThan(15);
    const defs = JSON.parse(
      readFileSync(join(DIR, 'definitions.json'), 'utf8'),
    ).definitions;
    expect(defs.issueStatus.enum).toEqual([...ISSUE_STATUSES]);
    expect(defs.runOutcome.enum).toEqual([...RUN_OUTCOMES]);
    // Shipped with the package, and each documented.
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    expect(pkg.files).toContain('schemas');
    const doc = readFileSync(join(ROOT, 'docs/json.md'), 'utf8');
    for (const name of schemas.keys())
      expect(doc, name).toContain(`${name}.json`);
  });

  it('match the CLI and the HTTP API on a repository without a running supervisor', async () => {
    const { dir, cleanup } = tempRepo();
    cleanups.push(cleanup);
    const env = testEnv();
    const opts = { cwd: dir, env };
    check('cli-init', await cliJson(['init'], opts));
    check('cli-issue-add', await cliJson(['issue', 'add', 'one'], opts));
    check(
      'cli-issue-add',
      await cliJson(['issue', 'add', 'two', '--priority', 'urgent'], opts),
    );
    check('cli-issue-list', await cliJson(['issue', 'list'], opts));
    check('cli-issue-show', await cliJson(['issue', 'show', '1'], opts));
    const status = await cliJson(['status'], opts);
    check('cli-status', status);
    check('cli-doctor', await cliJson(['doctor'], opts));
    check('cli-stop', await cliJson(['stop'], opts));
    check('cli-cleanup', await cliJson(['cleanup'], opts));
    check('cli-land', await cliJson(['land', '--all', '--dry-run'], opts));
    check(
      'cli-compose-config',
      await cliJson(['compose-config', '--agents', '2'], opts),
    );

    const t = await startTestDashboard();
    cleanups.push(() => t.close());
    t.ctx.issues.add({ title: 'waiting' });
    const done = t.ctx.issues.add({ title: 'finished' });
    t.ctx.issues.update(done.id, { status: 'done', agent: 'agent-001' });
    for (const [path, name] of [
      ['/api/status', 'api-status'],
      ['/api/issues?limit=1', 'api-issues'],
      ['/api/session', 'api-session'],
      ['/api/agents/agent-001/logs', 'api-logs'],
    ] as const) {
      const r = await http('GET', `${t.url}${path}`);
      expect(r.status, path).toBe(200);
      check(name, r.json());
    }
    const csrf = (await http('GET', `${t.url}/api/session`)).json().csrfToken;
    const control = (path: string) =>
      http('POST', `${t.url}/api/issues/${path}`, {
        body: {},
        headers: { origin: t.url, 'x-supervisor-csrf': csrf },
      });
    const cancelled = await control('1/cancel');
    expect(cancelled.status, cancelled.text).toBe(200);
    check('api-issue-control', cancelled.json());
    const landed = await control(`${done.id}/land`);
    expect(landed.status, landed.text).toBe(200);
    check('api-land', landed.json());
    const bad = await http('GET', `${t.url}/api/issues?status=nope`);
    expect(bad.status).toBe(400);
    check('api-error', bad.json());
    t.fakeRunning();
    t.ctx.slots.ensure(1, '/tmp/wt', 'agent/001');
    const session = (await http('GET', `${t.url}/api/session`)).json();
    const restart = await http(
      'POST',
      `${t.url}/api/agents/agent-001/restart`,
      {
        body: {},
        headers: { origin: t.url, 'x-supervisor-csrf': session.csrfToken },
      },
    );
    expect(restart.status).toBe(202);
    check('api-restart', restart.json());
  });

  it('match a running supervisor: status with agents at work, issue show with runs, scale, stop', async () => {
    const { dir, cleanup } = tempRepo();
    cleanups.push(cleanup);
    const env = testEnv();
    const opts = { cwd: dir, env };
    await cliJson(['issue', 'add', 'quick'], opts);
    await cliJson(['issue', 'add', 'slow', '--body', 'sleep: 60000'], opts);
    const sup = await startSupervisor(dir, env, ['--agents', '2']);
    cleanups.push(() => sup.stop());
    const busy = await waitFor(
      async () => {
        const s = await cliJson<any>(['status'], opts);
        return s.agents.some(
          (a: any) => a.state === 'working' && a.issue?.id === 2,
        ) && s.agents.some((a: any) => a.state === 'idle')
          ? s
          : false;
      },
      { timeoutMs: 90_000, what: 'one agent working on #2, one idle' },
    );
    check('cli-status', busy);
    check('cli-issue-show', await cliJson(['issue', 'show', '1'], opts));
    check('cli-issue-list', await cliJson(['issue', 'cancel', '2'], opts));
    check('cli-restart', await cliJson(['restart', 'agent-001'], opts));
    check('cli-scale', await cliJson(['scale', '1'], opts));
    const t = await runCli(['stop', '--json'], opts);
    expect(t.code, t.stderr).toBe(0);
    check('cli-stop', JSON.parse(t.stdout));
  });
});
