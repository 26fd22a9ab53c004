/**
 * Agents can write the repository's git dir (their commits go there; in the Docker runtime only
 * objects and their own refs, see test/docker/refs.test.ts). Hooks, `core.fsmonitor` and
 * filter/diff drivers planted there must not make the supervisor run anything when it creates
 * worktrees, publishes `issue/<id>` (update-ref runs the reference-transaction hook) or removes
 * `agent/*` branches, nor the runner when it checks out and commits (issue 13 item 4).
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
    // Drivers an agent can name from .gitattributes (filters run on checkout and add).
    writeFileSync(join(dir, '.gitattributes'), '* filter=canary diff=canary\n');
    git(dir, 'add', 'supervisor.config.json', '.gitattributes');
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
    for (const [key, name] of [
      ['filter.canary.clean', 'filter-clean'],
      ['filter.canary.smudge', 'filter-smudge'],
      ['diff.canary.textconv', 'diff-textconv'],
    ] as const) {
      const file = join(dir, '.git', name);
      // A filter passes the content through, after recording who ran it.
      writeFileSync(file, record(name).replace('exit 0', 'cat'));
      chmodSync(file, 0o755);
      git(dir, 'config', key, file);
    }
    git(dir, 'config', 'filter.canary.required', 'true');
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
    // Neither the supervisor's own git (worktree add, update-ref, branch -D, from the daemon and
    // the CLI) nor the runner's (checkout -B, add, commit: run with the runner's environment,
    // outside the agent's process group) ran any of them.
    const callers = readdirSync(canaries).flatMap((f) =>
      readFileSync(join(canaries, f), 'utf8')
        .trim()
        .split('\n')
        .map((line) => `${f}: ${line}`),
    );
    expect(callers).toEqual([]);
    // The canaries work: the test's own git, without the safe settings, runs them.
    git(dir, 'checkout', '-q', '-B', 'canary-check', 'main');
    expect(readdirSync(canaries).length).toBeGreaterThan(0);
    expect(
      existsSync(join(canaries, 'pre-commit')),
      'the runner commits with --no-verify',
    ).toBe(false);
  });
});
