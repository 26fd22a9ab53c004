/**
 * Path traversal through slot ids (the CLI's `logs` argument, the dashboard's
 * /api/agents/:id/logs and its SSE stream), configuration values (queue prefix, base branch) and
 * branch names: all refused before any file or git ref is touched. `.worktreeinclude` entries that
 * climb out of the repository are refused in test/env/worktreeinclude.test.ts, and database-name
 * prefixes in test/env/allocator.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, testEnv } from '../helpers/cli.js';
import { git, tempDir, tempRepo } from '../helpers/repo.js';
import { http, readSse, startTestDashboard } from '../dashboard/helpers.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A secret next to the logs that a traversal would reach. */
function plantSecret(stateDir: string): string {
  const secret = `SECRET-${Math.random().toString(36).slice(2)}`;
  mkdirSync(join(stateDir, 'logs'), { recursive: true });
  writeFileSync(join(stateDir, 'secret.log'), `${secret}\n`);
  writeFileSync(
    join(stateDir, 'logs', 'agent-001.log'),
    'an ordinary log line\n',
  );
  return secret;
}

const HOSTILE_IDS = [
  '../secret',
  'agent-001/../../secret',
  'agent-001/../../../etc/passwd',
  '/etc/passwd',
  '..',
  'agent-0001',
  'agent-001\n',
  '-agent-001',
];

describe('path traversal', () => {
  it('the CLI refuses slot ids that are not agent-NNN before reading any file', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const env = testEnv();
    expect((await runCli(['init'], { cwd: repo.dir, env })).code).toBe(0);
    const secret = plantSecret(join(repo.dir, '.supervisor'));
    const results = await Promise.all(
      HOSTILE_IDS.map((id) =>
        runCli(['logs', '--', id], { cwd: repo.dir, env }),
      ),
    );
    for (const [i, id] of HOSTILE_IDS.entries()) {
      const r = results[i]!;
      expect(r.code, JSON.stringify(id)).toBe(2);
      expect(r.stderr, JSON.stringify(id)).toMatch(/is not an agent id/);
      expect(r.stdout + r.stderr).not.toContain(secret);
      expect(r.stdout + r.stderr).not.toMatch(/root:x:0:0/);
    }
    const ok = await runCli(['logs', 'agent-001'], { cwd: repo.dir, env });
    expect(ok).toMatchObject({ code: 0, stdout: 'an ordinary log line\n' });
  });

  it('the dashboard refuses them on the log API and its event stream (also percent-encoded)', async () => {
    const t = await startTestDashboard();
    cleanups.push(() => t.close());
    const secret = plantSecret(t.ctx.paths.stateDir);
    const encoded = HOSTILE_IDS.map(encodeURIComponent);
    const raw = [
      '..%2fsecret',
      '%2e%2e%2fsecret',
      '..%252fsecret',
      'agent-001%00',
      '%2e%2e',
    ];
    for (const id of [...encoded, ...raw]) {
      const r = await http('GET', `${t.url}/api/agents/${id}/logs?lines=100`);
      expect([400, 404], `${id}: ${r.status} ${r.text}`).toContain(r.status);
      expect(r.text).not.toContain(secret);
      expect(r.text).not.toMatch(/root:x:0:0/);
      const s = await readSse(
        `${t.url}/api/agents/${id}/logs/stream?lines=100`,
        { until: () => false, timeoutMs: 1500 },
      );
      expect([400, 404], `${id} stream: ${s.status}`).toContain(s.status);
      expect(JSON.stringify(s)).not.toContain(secret);
    }
    const ok = await http('GET', `${t.url}/api/agents/agent-001/logs`);
    expect(ok.status).toBe(200);
    expect(ok.json().lines).toEqual(['an ordinary log line']);
  });

  it('refuses a queue prefix or base branch that could climb out or read as an option, before anything is created', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const out = tempDir('sup-sec-');
    const canary = join(out, 'CANARY');
    const cases: Array<[Record<string, string>, RegExp]> = [
      [
        { SUPERVISOR_PREFIX: '../../x' },
        /prefix: prefix may hold letters, digits, _ \. -/,
      ],
      [
        { SUPERVISOR_PREFIX: 'a:b*' },
        /prefix: prefix may hold letters, digits, _ \. -/,
      ],
      [
        { SUPERVISOR_BASE_BRANCH: '../../etc' },
        /baseBranch: not a valid branch name/,
      ],
      [{ SUPERVISOR_BASE_BRANCH: '-x' }, /baseBranch: not a valid branch name/],
      [
        { SUPERVISOR_BASE_BRANCH: '--upload-pack=touch' },
        /baseBranch: not a valid branch name/,
      ],
      [
        { SUPERVISOR_BASE_BRANCH: `main;touch ${canary}` },
        /baseBranch: not a valid branch name/,
      ],
      [
        { SUPERVISOR_BASE_BRANCH: 'main\n-x' },
        /baseBranch: not a valid branch name/,
      ],
      [
        { SUPERVISOR_BASE_BRANCH: 'refs/heads/../../x' },
        /baseBranch: not a valid branch name/,
      ],
    ];
    const results = await Promise.all(
      cases.map(([extra]) =>
        runCli(['start', '--agents', '1', '--no-dashboard'], {
          cwd: repo.dir,
          env: testEnv(extra),
        }),
      ),
    );
    for (const [i, [extra, says]] of cases.entries()) {
      const r = results[i]!;
      expect(r.code, JSON.stringify(extra)).toBe(1);
      expect(r.stderr, JSON.stringify(extra)).toMatch(says);
      expect(r.stderr).toMatch(
        /hint: check flags, SUPERVISOR_\* environment variables and supervisor.config.json/,
      );
    }
    // The same from supervisor.config.json.
    writeFileSync(
      join(repo.dir, 'supervisor.config.json'),
      JSON.stringify({ baseBranch: '../outside' }),
    );
    const fromFile = await runCli(
      ['start', '--agents', '1', '--no-dashboard'],
      { cwd: repo.dir, env: testEnv() },
    );
    expect(fromFile.code).toBe(1);
    expect(fromFile.stderr).toMatch(/baseBranch: not a valid branch name/);
    expect(existsSync(canary)).toBe(false);
    expect(existsSync(join(repo.dir, '.worktrees'))).toBe(false);
    expect(git(repo.dir, 'for-each-ref', '--format=%(refname)')).toBe(
      'refs/heads/main',
    );
  });
});
