import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { useCleanups } from '../helpers/cleanup.js';
import { cliJson, runCli, startSupervisor, waitFor } from '../helpers/cli.js';
import { git } from '../helpers/repo.js';
import {
  describeDocker,
  dockerRepo,
  ensureRunnerImage,
  IMAGE_BUILD_TIMEOUT_MS,
} from './helpers.js';

const cleanups = useCleanups();

type IssueJson = {
  id: number;
  status: string;
  commit: string | null;
  agent: string | null;
};

async function done(
  dir: string,
  env: Record<string, string>,
  id: number,
): Promise<IssueJson> {
  return waitFor(
    async () => {
      const i = await cliJson<IssueJson>(['issue', 'show', String(id)], {
        cwd: dir,
        env,
      });
      return i.status === 'done' || i.status === 'failed' ? i : false;
    },
    { timeoutMs: 60_000, what: `issue #${id} finished` },
  );
}

describeDocker(
  'Docker runtime: what an agent container may write in git',
  () => {
    beforeAll(ensureRunnerImage, IMAGE_BUILD_TIMEOUT_MS + 60_000);

    it("commits reach the host as the job's result; main, issue/*, tags, packed-refs, config and other slots' agent branches cannot be moved; other worktrees and the Docker socket are not there", async () => {
      const repo = await dockerRepo();
      cleanups.push(repo.cleanup);
      const { dir, env } = repo;
      const sup = await startSupervisor(dir, env, [
        '--agents',
        '2',
        '--no-dashboard',
      ]);
      cleanups.push(async () => void (await sup.stop()));
      await runCli(['issue', 'add', 'First'], { cwd: dir, env });
      const first = await done(dir, env, 1);
      expect(first.status).toBe('done');
      // issue/1 packed too: rewriting it then means rewriting packed-refs (in the git dir's root).
      git(dir, 'pack-refs', '--all');
      const packedBefore = readFileSync(join(dir, '.git/packed-refs'), 'utf8');
      const mainBefore = git(dir, 'rev-parse', 'main');
      const issue1Before = git(dir, 'rev-parse', 'issue/1');
      const agentsBefore = git(
        dir,
        'for-each-ref',
        '--format=%(refname) %(objectname)',
        'refs/heads/agent',
      );
      expect(agentsBefore.split('\n')).toHaveLength(2);

      await runCli(['issue', 'add', 'vandal'], { cwd: dir, env });
      const vandal = await done(dir, env, 2);
      expect(
        vandal,
        JSON.stringify(
          await cliJson(['issue', 'show', '2'], { cwd: dir, env }),
        ),
      ).toMatchObject({ status: 'done' });
      // The container's commit was published as issue/2 (from its result, not a host branch).
      expect(git(dir, 'rev-parse', 'issue/2')).toBe(vandal.commit);
      const report = git(dir, 'show', `${vandal.commit}:vandal-2.txt`).split(
        '\n',
      );
      // Moving the other slot's branch wrote only into the container's own ref directory.
      expect(report).toContain('moved-other: 0');
      expect(
        git(
          dir,
          'for-each-ref',
          '--format=%(refname) %(objectname)',
          'refs/heads/agent',
        ),
      ).toBe(agentsBefore);
      const attempts = report.filter(
        (l) => !l.startsWith('uid ') && !l.startsWith('moved-other'),
      );
      expect(attempts).toHaveLength(10);
      expect(attempts.filter((l) => !l.startsWith('refused: '))).toEqual([]);
      expect(
        Number(report.find((l) => l.startsWith('uid '))!.slice(4)),
      ).toBeGreaterThan(0);

      expect(git(dir, 'rev-parse', 'main')).toBe(mainBefore);
      expect(git(dir, 'rev-parse', 'issue/1')).toBe(issue1Before);
      expect(readFileSync(join(dir, '.git/packed-refs'), 'utf8')).toBe(
        packedBefore,
      );
      expect(git(dir, 'tag', '--list')).toBe('');
      expect(
        git(dir, 'for-each-ref', '--format=%(refname)', 'refs/heads/evil'),
      ).toBe('');
      expect(() => git(dir, 'config', '--get', 'core.hooksPath')).toThrow();
      expect(git(dir, 'fsck', '--no-dangling')).toBe('');
    });
  },
);
