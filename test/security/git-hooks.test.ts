/**
 * Agents can write the repository's git dir (their commits go there; in the Docker runtime only
 * objects and their own refs, see test/docker/refs.test.ts). Hooks and `core.fsmonitor` planted
 * there must not make the supervisor run anything when it creates worktrees, publishes
 * `issue/<id>` (update-ref runs the reference-transaction hook) or removes `agent/*` branches.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  chmodSync,
  existsSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { cliJson, startSupervisor, testEnv, waitFor } from '../helpers/cli.js';
import { git, tempDir, tempRepo } from '../helpers/repo.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const HOOKS = [
  'reference-transaction',
  'post-checkout',
  'post-commit',
  'pre-commit',
  'post-merge',
  'pre-auto-gc',
  'post-rewrite',
];

describe('git hooks planted in the repository', () => {
  it('never run from the supervisor: worktree add, issue/<id> publication and cleanup run without hooks or fsmonitor', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const dir = repo.dir;
    const canaries = tempDir('sup-hooks-');
    writeFileSync(
      join(dir, 'supervisor.config.json'),
      JSON.stringify({ env: { enabled: false } }),
    );
    git(dir, 'add', 'supervisor.config.json');
    git(dir, 'commit', '-qm', 'config');
    // Each records which program ran git: the command line of git's parent.
    const record = (name: string) =>
      `#!/bin/sh\ngp=$(ps -o ppid= -p $PPID | tr -d ' ')\necho "$(tr '\\0' ' ' < /proc/$gp/cmdline)" >> ${join(canaries, name)}\nexit 0\n`;
    for (const h of HOOKS) {
      const file = join(dir, '.git', 'hooks', h);
      writeFileSync(file, record(h));
      chmodSync(file, 0o755);
    }
    const fsmonitor = join(dir, '.git', 'fsmonitor-hook');
    writeFileSync(fsmonitor, record('fsmonitor').replace('exit 0', 'exit 1'));
    chmodSync(fsmonitor, 0o755);
    git(dir, 'config', 'core.fsmonitor', fsmonitor);
    const env = testEnv();
    await cliJson(['issue', 'add', 'Publish me'], { cwd: dir, env });
    const sup = await startSupervisor(dir, env, [
      '--agents',
      '1',
      '--no-dashboard',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    const issue = await waitFor(
      async () => {
        const s = await cliJson<any>(['issue', 'show', '1'], { cwd: dir, env });
        return s.status === 'done' || s.status === 'failed' ? s : false;
      },
      { timeoutMs: 60_000, what: 'issue done' },
    );
    expect(issue.status).toBe('done');
    expect(git(dir, 'rev-parse', 'issue/1')).toBe(issue.commit);
    await cliJson(['stop'], { cwd: dir, env });
    const cleaned = await cliJson<any>(['cleanup'], { cwd: dir, env });
    expect(cleaned.removed).toEqual(['agent-001']);
    // The supervisor's own git (worktree add, update-ref, branch -D, from the daemon and the CLI)
    // ran none of them. The runner's checkout and commit run where its agent runs, in the agent's
    // trust domain (same user, or the same container), so hooks run there are no escalation.
    const callers = readdirSync(canaries).flatMap((f) =>
      readFileSync(join(canaries, f), 'utf8')
        .trim()
        .split('\n')
        .map((line) => `${f}: ${line}`),
    );
    expect(callers.filter((c) => !c.includes('agent-runner/main.js'))).toEqual(
      [],
    );
    expect(
      existsSync(join(canaries, 'pre-commit')),
      'the runner commits with --no-verify',
    ).toBe(false);
  });
});
