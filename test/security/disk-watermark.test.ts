/**
 * Issue 13 item 6: the host's low-disk watermark. The repository lives on a small tmpfs (a real
 * filesystem of its own); with less than `disk.minFree` free there, claiming pauses through the
 * pause mechanism (kind `disk`, shown by `status`) and the queued issue waits; once space is
 * freed, claiming resumes by itself and the issue is done.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { useCleanups } from '../helpers/cleanup.js';
import {
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
} from '../helpers/cli.js';
import { tempRepo } from '../helpers/repo.js';
import { describeNeeds } from '../helpers/requirements.js';

const cleanups = useCleanups();
const MiB = 1024 * 1024;

const notRoot =
  process.getuid?.() === 0
    ? undefined
    : 'mounting a tmpfs needs root (the test gives the repository a small filesystem of its own)';

let fs = '';

describeNeeds(notRoot, 'low-disk watermark', () => {
  beforeAll(() => {
    fs = mkdtempSync(join(tmpdir(), 'sup-disk-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=96m', 'tmpfs', fs]);
  });
  afterAll(() => {
    execFileSync('umount', ['-l', fs]);
    rmSync(fs, { recursive: true, force: true });
  });

  it('pauses claiming (kind disk) while the repository’s filesystem is short of disk.minFree, and resumes once space is freed', async () => {
    const before = process.env.TMPDIR;
    process.env.TMPDIR = fs;
    let repo;
    try {
      repo = tempRepo();
    } finally {
      if (before === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = before;
    }
    cleanups.push(repo.cleanup);
    const { dir } = repo;
    const env = testEnv({ SUPERVISOR_DISK_MIN_FREE: String(40 * MiB) });
    // Fills the filesystem until less than the watermark is free.
    const ballast = join(fs, 'ballast.bin');
    writeFileSync(ballast, Buffer.alloc(70 * MiB, 1));
    const sup = await startSupervisor(dir, env, [
      '--agents',
      '1',
      '--no-dashboard',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    await runCli(['issue', 'add', 'Waits for disk'], { cwd: dir, env });
    const paused = await waitFor(
      async () => {
        const s = await cliJson<any>(['status'], { cwd: dir, env });
        return s.pause?.kind === 'disk' ? s : false;
      },
      { what: 'a disk pause' },
    );
    expect(paused.pause.reason).toMatch(
      /low disk: \d+ MiB free for .*, below disk\.minFree \(40 MiB\)/,
    );
    expect(paused.pause.text).toBe('paused: low disk until space is freed');
    const shown = await runCli(['status'], { cwd: dir, env });
    expect(shown.stdout).toMatch(/paused: low disk until space is freed/);
    const issue = await cliJson<any>(['issue', 'show', '1'], { cwd: dir, env });
    expect(['open', 'queued']).toContain(issue.status);

    rmSync(ballast);
    await waitFor(
      async () =>
        (await cliJson<any>(['issue', 'show', '1'], { cwd: dir, env }))
          .status === 'done',
      { what: 'the issue done once space was freed' },
    );
    const after = await cliJson<any>(['status'], { cwd: dir, env });
    expect(after.pause).toBeNull();
  });
});
