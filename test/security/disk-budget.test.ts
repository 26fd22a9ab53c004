/**
 * Issue 13 item 6, Docker runtime: an agent whose files pass `diskPerAgent` (here 16 MiB) is
 * stopped, its attempt fails with the kind `disk`, and what it wrote is gone before the slot's
 * next job, which succeeds. Three places it can write: its container's HOME (outside every
 * mount), a git-ignored directory of its worktree (`node_modules/`, which the per-job reset
 * keeps), and the repository's shared object store (`git hash-object -w`).
 */
import { writeFileSync } from 'node:fs';
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
} from '../docker/helpers.js';

const cleanups = useCleanups();

const AGENT = `#!/bin/sh
case "$ISSUE_TITLE" in
  fill*)
    dd if=/dev/urandom of="$HOME/fill.bin" bs=1M count=40 2>/dev/null
    sleep 120 ;;
  cache*)
    mkdir -p node_modules/old && echo kept > node_modules/old/keep.txt
    echo cache > cache.txt
    exit 0 ;;
  ignored*)
    mkdir -p node_modules/pkg
    dd if=/dev/urandom of=node_modules/pkg/blob.bin bs=1M count=40 2>/dev/null
    sleep 120 ;;
  objects*)
    for i in 1 2 3 4; do
      head -c 10485760 /dev/urandom | git hash-object -w --stdin >> "$HOME/objects.txt"
    done
    sleep 120 ;;
  *)
    ls "$HOME" > home.txt
    find node_modules -type f | sort > modules.txt
    exit 0 ;;
esac
`;

type Run = { errorKind?: string | null; error?: string | null };
type IssueJson = {
  status: string;
  error: string | null;
  commit: string | null;
  runs?: Run[];
};

describeDocker(
  "Docker runtime: an agent past diskPerAgent is stopped with reason 'disk'",
  () => {
    beforeAll(ensureRunnerImage, IMAGE_BUILD_TIMEOUT_MS + 60_000);

    it('stops the agent, fails the attempt with the kind disk, and the next job starts clean', async () => {
      const repo = await dockerRepo({ config: { diskPerAgent: '16m' } });
      cleanups.push(repo.cleanup);
      const { dir } = repo;
      writeFileSync(join(dir, 'disk.sh'), AGENT);
      writeFileSync(join(dir, '.gitignore'), 'node_modules/\n');
      git(dir, 'add', 'disk.sh', '.gitignore');
      git(dir, 'commit', '-qm', 'disk agent');
      const env = {
        ...repo.env,
        SUPERVISOR_AGENT_COMMAND: 'sh disk.sh',
        SUPERVISOR_ATTEMPTS: '1',
        SUPERVISOR_DISK_CHECK_INTERVAL: '200',
      };
      const sup = await startSupervisor(dir, env, [
        '--agents',
        '1',
        '--no-dashboard',
      ]);
      cleanups.push(async () => void (await sup.stop()));
      const finished = (id: number) =>
        waitFor(
          async () => {
            const i = await cliJson<IssueJson>(['issue', 'show', String(id)], {
              cwd: dir,
              env,
            });
            return ['done', 'failed'].includes(i.status) ? i : false;
          },
          { what: `issue #${id} finished` },
        );

      const stopped = async (id: number) => {
        const i = await finished(id);
        expect(i.status, `#${id}`).toBe('failed');
        expect(i.error).toMatch(
          /agent stopped: its files took \d+ MiB, past diskPerAgent \(16 MiB\)/,
        );
        expect(i.runs?.at(-1)?.errorKind).toBe('disk');
      };
      const done = async (id: number) => {
        const i = await finished(id);
        expect(i.status, i.error ?? '').toBe('done');
        return {
          home: git(dir, 'show', `${i.commit}:home.txt`),
          modules: git(dir, 'show', `${i.commit}:modules.txt`),
        };
      };
      const add = (title: string) =>
        runCli(['issue', 'add', title], { cwd: dir, env });

      await add('fill the disk');
      await stopped(1);
      await add('look at home');
      expect((await done(2)).home).not.toMatch(/fill\.bin/);

      // An ignored directory survives the per-job reset (a dependency cache): the 40 MiB the
      // agent put there count, and go after the stop; what earlier jobs put there stays.
      await add('cache a module');
      await finished(3);
      await add('ignored fill');
      await stopped(4);
      await add('look at modules');
      expect((await done(5)).modules.split('\n')).toEqual([
        'node_modules/old/keep.txt',
      ]);

      // Loose objects in the shared object store: 40 MiB that no ref reaches.
      await add('objects fill');
      await stopped(6);
      await add('look again');
      await done(7);
    });
  },
);
