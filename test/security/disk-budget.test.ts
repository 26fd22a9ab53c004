/**
 * Issue 13 item 6: an agent whose files pass `diskPerAgent` (here 16 MiB) is stopped, its attempt
 * fails with the kind `disk`, and what it wrote is gone before the slot's next job, which
 * succeeds. Where it writes: a git-ignored directory of its worktree (`node_modules/`, which the
 * per-job reset keeps), the repository's shared object store (`git hash-object -w`), and in a
 * Docker container its HOME (outside every mount). Docker and process runtimes.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { useCleanups } from '../helpers/cleanup.js';
import {
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
} from '../helpers/cli.js';
import { git, tempRepo } from '../helpers/repo.js';
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

/**
 * The agent's cases, one issue each, on one slot; `home`: the Docker runtime's (its HOME case,
 * measured in a container only: in the process runtime HOME is the user's; ignored files kept
 * across jobs).
 */
async function fillAndRecover(
  dir: string,
  repoEnv: Record<string, string>,
  o: { home: boolean },
): Promise<void> {
  writeFileSync(join(dir, 'disk.sh'), AGENT);
  writeFileSync(join(dir, '.gitignore'), 'node_modules/\n');
  git(dir, 'add', 'disk.sh', '.gitignore');
  git(dir, 'commit', '-qm', 'disk agent');
  const env = {
    ...repoEnv,
    SUPERVISOR_AGENT_COMMAND: 'sh disk.sh',
    SUPERVISOR_ATTEMPTS: '1',
    SUPERVISOR_DISK_CHECK_INTERVAL: '200',
    SUPERVISOR_DISK_PER_AGENT: String(16 * 2 ** 20),
  };
  const sup = await startSupervisor(dir, env, [
    '--agents',
    '1',
    '--no-dashboard',
  ]);
  cleanups.push(async () => void (await sup.stop()));
  let issues = 0;
  const run = async (title: string) => {
    await runCli(['issue', 'add', title], { cwd: dir, env });
    const id = ++issues;
    return waitFor(
      async () => {
        const i = await cliJson<IssueJson>(['issue', 'show', String(id)], {
          cwd: dir,
          env,
        });
        return ['done', 'failed'].includes(i.status) ? i : false;
      },
      { what: `issue #${id} (${title}) finished` },
    );
  };
  const stopped = async (title: string) => {
    const i = await run(title);
    expect(i.status, title).toBe('failed');
    expect(i.error).toMatch(
      /agent stopped: its files took \d+ MiB, past diskPerAgent \(16 MiB\)/,
    );
    expect(i.runs?.at(-1)?.errorKind).toBe('disk');
  };
  const done = async (title: string) => {
    const i = await run(title);
    expect(i.status, i.error ?? '').toBe('done');
    return {
      home: git(dir, 'show', `${i.commit}:home.txt`),
      modules: git(dir, 'show', `${i.commit}:modules.txt`),
    };
  };

  if (o.home) {
    await stopped('fill the disk');
    expect((await done('look at home')).home).not.toMatch(/fill\.bin/);
  }

  // An ignored directory survives the per-job reset in a container (a dependency cache): the
  // 40 MiB the agent put there count, and go after the stop; what earlier jobs put there stays.
  // (The process runtime re-syncs .worktreeinclude before each job, which removes every ignored
  // file it does not list.)
  expect((await run('cache a module')).status).toBe('done');
  await stopped('ignored fill');
  const { modules } = await done('look at modules');
  expect(modules).not.toMatch(/blob\.bin/);
  if (o.home)
    expect(modules.split('\n')).toEqual(['node_modules/old/keep.txt']);

  // Loose objects in the shared object store: 40 MiB that no ref reaches.
  await stopped('objects fill');
  await done('look again');
}

describeDocker(
  "Docker runtime: an agent past diskPerAgent is stopped with reason 'disk'",
  () => {
    beforeAll(ensureRunnerImage, IMAGE_BUILD_TIMEOUT_MS + 60_000);

    it('stops the agent (HOME, ignored files, loose objects), fails the attempt with the kind disk, and the next job starts clean', async () => {
      const repo = await dockerRepo();
      cleanups.push(repo.cleanup);
      await fillAndRecover(repo.dir, repo.env, { home: true });
    });
  },
);

describe("process runtime: an agent past diskPerAgent is stopped with reason 'disk'", () => {
  it('stops the agent (ignored files, loose objects), fails the attempt with the kind disk, and the next job starts clean', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    await fillAndRecover(repo.dir, testEnv(), { home: false });
  });
});
