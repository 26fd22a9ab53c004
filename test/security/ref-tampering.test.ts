/**
 * Refs outside the agent's branch (process runtime, where the agent can write the whole git
 * directory): an agent moves `main` and `issue/1` to an unrelated commit and tags `issue/7`.
 * The change is detected when its agent exits, put back, reported, and the attempt's result is
 * refused; the next issue builds on the real `main`. (Docker: test/docker/refs.test.ts.)
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it, describe } from 'vitest';
import { useCleanups } from '../helpers/cleanup.js';
import { cliJson, startSupervisor, testEnv, waitFor } from '../helpers/cli.js';
import { git, tempDir, tempRepo } from '../helpers/repo.js';

const cleanups = useCleanups();

const AGENT = `#!/bin/sh
case "$ISSUE_TITLE" in
  vandal*)
    forged=$(git commit-tree -m forged "$(git mktree </dev/null)")
    git update-ref refs/heads/main "$forged"
    git update-ref refs/heads/issue/1 "$forged"
    git tag issue/7 "$forged"
    echo vandal > vandal.txt
    exit 0 ;;
  *)
    echo "$ISSUE_TITLE" > "work-$ISSUE_ID.txt"
    exit 0 ;;
esac
`;

type Issue = {
  id: number;
  status: string;
  commit: string | null;
  error?: string | null;
  lastError?: string | null;
};

describe('refs outside the agent branch (process runtime)', () => {
  it('moving main and issue/1 and tagging issue/7 is detected, repaired and refused; the next issue builds on the real main', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const { dir } = repo;
    const agent = join(tempDir('sup-refs-'), 'agent.sh');
    writeFileSync(agent, AGENT, { mode: 0o755 });
    writeFileSync(
      join(dir, 'supervisor.config.json'),
      JSON.stringify({ env: { enabled: false } }),
    );
    git(dir, 'add', 'supervisor.config.json');
    git(dir, 'commit', '-qm', 'config');
    const main = git(dir, 'rev-parse', 'main');
    const env = testEnv({
      SUPERVISOR_AGENT_COMMAND: `/bin/sh ${agent}`,
      SUPERVISOR_ATTEMPTS: '1',
    });
    const sup = await startSupervisor(dir, env, [
      '--agents',
      '1',
      '--no-dashboard',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    const show = (id: number) =>
      cliJson<Issue>(['issue', 'show', String(id)], { cwd: dir, env });
    const finished = (id: number) =>
      waitFor(
        async () => {
          const i = await show(id);
          return i.status === 'done' || i.status === 'failed' ? i : false;
        },
        { timeoutMs: 60_000, what: `issue #${id} finished` },
      );

    await cliJson(['issue', 'add', 'first'], { cwd: dir, env });
    const first = await finished(1);
    expect(first.status).toBe('done');
    const issue1 = git(dir, 'rev-parse', 'issue/1');

    await cliJson(['issue', 'add', 'vandal'], { cwd: dir, env });
    const vandal = await finished(2);
    expect(vandal.status).toBe('failed');
    const error = (vandal.error ?? '').split('(')[1] ?? '';
    expect(vandal.error).toMatch(
      /^refs outside agent\/001 were changed during the agent's run \(.*\); repaired; the result is refused$/,
    );
    for (const what of [
      /\bmain [0-9a-f]{12} → /,
      /\bissue\/1 [0-9a-f]{12} → /,
      /tag issue\/7 nothing → /,
    ])
      expect(error).toMatch(what);
    expect(git(dir, 'rev-parse', 'main')).toBe(main);
    expect(git(dir, 'rev-parse', 'refs/heads/issue/1')).toBe(issue1);
    expect(git(dir, 'tag', '--list')).toBe('');
    expect(
      git(dir, 'for-each-ref', '--format=%(refname)', 'refs/heads/issue/2'),
    ).toBe('');

    await cliJson(['issue', 'add', 'after'], { cwd: dir, env });
    const after = await finished(3);
    expect(after.status).toBe('done');
    expect(git(dir, 'rev-parse', `${after.commit}^`)).toBe(main);
    expect(
      git(dir, 'diff', '--name-only', main, 'issue/3').split('\n'),
    ).toEqual(['work-3.txt']);
  }, 120_000);
});
