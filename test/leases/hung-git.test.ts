/**
 * One hung call cannot stop all recording: a git that never returns (here a wrapper that sleeps
 * when the recorder publishes `issue/1`) is killed at its timeout, or left behind at the recorder
 * handler's deadline (the next publication goes to another git process), and results of other
 * issues are recorded meanwhile. Once git answers
 * again, the stuck result is recorded by the reconcile.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { chmodSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { useCleanups } from '../helpers/cleanup.js';
import {
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
} from '../helpers/cli.js';
import { git, tempDir, tempRepo } from '../helpers/repo.js';

const cleanups = useCleanups();

const REAL_GIT = execFileSync('sh', ['-c', 'command -v git'], {
  encoding: 'utf8',
}).trim();

describe('a hung git in the recorder', () => {
  it.each([
    ['the git timeout kills it', { git: '3000', deadline: '300000' }],
    ['the handler deadline moves on', { git: '300000', deadline: '3000' }],
  ])('does not stop the recording of other issues (%s)', async (_, limits) => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const bin = tempDir('sup-fakegit-');
    const hang = join(bin, 'hang');
    // Sleeps (bounded, so nothing outlives the test for long) when asked to move issue/1: on
    // its command line, or on the stdin of the recorder's long-lived `update-ref --stdin`.
    writeFileSync(
      join(bin, 'git'),
      [
        '#!/bin/sh',
        'case " $* " in *" update-ref --stdin "*)',
        '  while IFS= read -r line; do',
        `    case "$line" in "update refs/heads/issue/1 "*) [ -e ${hang} ] && exec sleep 40;; esac`,
        `    printf '%s\\n' "$line"`,
        `  done | ${REAL_GIT} "$@"`,
        '  exit;;',
        'esac',
        'for a in "$@"; do',
        `  if [ "$a" = refs/heads/issue/1 ] && [ -e ${hang} ]; then exec sleep 40; fi`,
        'done',
        `exec ${REAL_GIT} "$@"`,
        '',
      ].join('\n'),
    );
    chmodSync(join(bin, 'git'), 0o755);
    writeFileSync(hang, '');
    const env = testEnv({
      PATH: `${bin}:${process.env.PATH}`,
      SUPERVISOR_GIT_COMMAND_TIMEOUT: limits.git,
      SUPERVISOR_RECORDER_DEADLINE: limits.deadline,
    });
    const show = (id: number) =>
      cliJson<any>(['issue', 'show', String(id)], { cwd: repo.dir, env });
    await runCli(['issue', 'add', 'First, its publication hangs'], {
      cwd: repo.dir,
      env,
    });
    await runCli(['issue', 'add', 'Second'], { cwd: repo.dir, env });
    const sup = await startSupervisor(repo.dir, env, [
      '--agents',
      '1',
      '--no-dashboard',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    // One agent takes #1 first; #2's result is recorded although #1's publication hangs.
    const second = await waitFor(
      async () => ((await show(2)).status === 'done' ? show(2) : false),
      { timeoutMs: 90_000, what: 'issue #2 recorded done' },
    );
    expect(second.branch).toBe('issue/2');
    expect((await show(1)).status).not.toBe('done');
    rmSync(hang);
    const first = await waitFor(
      async () => ((await show(1)).status === 'done' ? show(1) : false),
      { timeoutMs: 90_000, what: 'issue #1 recorded once git answers' },
    );
    expect(git(repo.dir, 'rev-parse', 'issue/1')).toBe(first.commit);
    expect(
      first.runs.filter((r: any) => r.outcome === 'succeeded'),
    ).toHaveLength(1);
  });
});
