/**
 * Issue 13 item 6, Docker runtime: an agent whose files pass `diskPerAgent` (here 16 MiB, written
 * into its container's HOME, outside every mount) is stopped, its attempt fails with the kind
 * `disk`, and what it wrote there is gone before the slot's next job, which succeeds.
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
  *)
    ls "$HOME" > home.txt
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
      git(dir, 'add', 'disk.sh');
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

      await runCli(['issue', 'add', 'fill the disk'], { cwd: dir, env });
      const filled = await finished(1);
      expect(filled.status).toBe('failed');
      expect(filled.error).toMatch(
        /agent stopped: its files took \d+ MiB, past diskPerAgent \(16 MiB\)/,
      );
      expect(filled.runs?.at(-1)?.errorKind).toBe('disk');

      await runCli(['issue', 'add', 'look at home'], { cwd: dir, env });
      const next = await finished(2);
      expect(next.status, next.error ?? '').toBe('done');
      expect(git(dir, 'show', `${next.commit}:home.txt`)).not.toMatch(
        /fill\.bin/,
      );
    });
  },
);
