import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import {
  type GitError,
  runGit,
  safeConfigArgs,
  safeGitEnv,
  textArgumentFile,
  useSpawnHelper,
} from '../../git/runner.js';
import { SpawnHelper } from '../../git/spawn-helper.js';
import { tempDir, tempRepo } from '../helpers/repo.js';

const repo = tempRepo();
const dir = tempDir('sup-git-helper-');
afterAll(() => {
  repo.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

/** What git got: `rev-parse --sq-quote` prints its arguments back, quoted. */
const echoArgs = async (args: string[]) =>
  (await runGit(['rev-parse', '--sq-quote', ...args], { cwd: repo.dir }))
    .stdout;

const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: GitError) => ({
      message: e.message,
      exitCode: e.exitCode,
      timedOut: e.timedOut,
    }),
  );

describe('the git spawn helper', () => {
  const weird = [
    "it's",
    'two\nlines',
    '$(touch /tmp/sup-helper-pwned) `id` $HOME',
    '; exit 3 #',
    '"\\',
  ];
  const missing = ['rev-parse', '--verify', 'no-such-ref^{commit}'];

  const plain = ['HEAD^{commit}', '--format=%H', 'refs/heads/issue/7', 'a,b:c'];

  it('gives git the same arguments, environment, output and failures as a direct start; never puts an argument with other characters in a shell line', async () => {
    const direct = {
      args: await echoArgs(plain),
      weird: await echoArgs(weird),
      ident: await runGit(['var', 'GIT_AUTHOR_IDENT'], {
        cwd: repo.dir,
        env: { GIT_AUTHOR_NAME: "O'Neil $(id)", GIT_AUTHOR_EMAIL: 'a@b' },
      }),
      failed: await failure(runGit(missing, { cwd: repo.dir })),
    };
    // Through the helper itself: a call it could not take would be started directly.
    const h = new SpawnHelper(join(dir, 'h1'), safeGitEnv(), [
      'git',
      ...safeConfigArgs(),
    ]);
    const via = async (args: string[], env: Record<string, string> = {}) => {
      const r = await h.run({
        args,
        cwd: repo.dir,
        env,
        timeoutMs: 10_000,
        maxBuffer: 1 << 20,
      });
      if (!r) throw new Error('the helper did not take the call');
      return r;
    };
    const failedVia = await via(missing);
    // Text such as an issue's title (the commit message) is started directly, not quoted.
    for (const w of weird)
      expect(
        await h.run({
          args: ['rev-parse', '--sq-quote', w],
          cwd: repo.dir,
          env: {},
          timeoutMs: 10_000,
          maxBuffer: 1 << 20,
        }),
      ).toBeUndefined();
    // So is an environment value that is not a plain word (an author read from an agent's commit).
    expect(
      await h.run({
        args: ['var', 'GIT_AUTHOR_IDENT'],
        cwd: repo.dir,
        env: { GIT_AUTHOR_NAME: "O'Neil $(id)", GIT_AUTHOR_EMAIL: 'a@b' },
        timeoutMs: 10_000,
        maxBuffer: 1 << 20,
      }),
    ).toBeUndefined();
    const helped = {
      args: (await via(['rev-parse', '--sq-quote', ...plain])).stdout,
      ident: await runGit(['var', 'GIT_AUTHOR_IDENT'], {
        cwd: repo.dir,
        env: { GIT_AUTHOR_NAME: "O'Neil $(id)", GIT_AUTHOR_EMAIL: 'a@b' },
      }),
      plainIdent: await via(['var', 'GIT_AUTHOR_IDENT'], {
        GIT_AUTHOR_NAME: 'agent-001',
        GIT_AUTHOR_EMAIL: 'agent-001@agent-supervisor.local',
      }),
      failed: {
        message: failedVia.stderr.trim(),
        exitCode: failedVia.status,
        timedOut: failedVia.timedOut,
      },
    };
    h.stop();
    expect(helped.args).toBe(direct.args);
    // Through runGit with the helper on, the same arguments reach git (started directly).
    useSpawnHelper(join(dir, 'h0'));
    expect(await echoArgs(weird)).toBe(direct.weird);
    expect(helped.ident.stdout.replace(/\d+ [+-]\d{4}\n$/, '')).toBe(
      direct.ident.stdout.replace(/\d+ [+-]\d{4}\n$/, ''),
    );
    expect(helped.plainIdent.stdout).toMatch(
      /^agent-001 <agent-001@agent-supervisor\.local> \d+ [+-]\d{4}\n$/,
    );
    expect(helped.failed).toEqual(direct.failed);
    expect(helped.failed?.exitCode).toBe(128);
  });

  it('kills git at its timeout; a call made meanwhile starts directly and is not held up', async () => {
    useSpawnHelper(join(dir, 'h2'));
    // In the repository's configuration: plain arguments, so the helper takes the call.
    execFileSync('git', ['config', 'alias.hang', '!exec sleep 20'], {
      cwd: repo.dir,
    });
    const t0 = Date.now();
    const hung = failure(
      runGit(['hang'], {
        cwd: repo.dir,
        timeoutMs: 1500,
      }),
    );
    const other = await echoArgs(['x']);
    expect(other).toBe(" 'x'\n");
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(await hung).toMatchObject({ timedOut: true, exitCode: null });
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('starts its shell again when it died or stopped answering; takes nothing it cannot pass (the caller starts git)', async () => {
    const h = new SpawnHelper(join(dir, 'h3'), safeGitEnv(), ['git']);
    const call = {
      args: ['rev-parse', '--sq-quote', 'y'],
      cwd: repo.dir,
      env: {},
      timeoutMs: 10_000,
      maxBuffer: 1024,
    };
    expect((await h.run(call))?.stdout).toBe(" 'y'\n");
    process.kill(h.pid!, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 200));
    expect((await h.run(call))?.stdout).toBe(" 'y'\n");
    // A shell that does not answer holds a call no longer than its timeout; the next gets a new one.
    const stopped = h.pid!;
    process.kill(stopped, 'SIGSTOP');
    const t0 = Date.now();
    expect(await h.run({ ...call, timeoutMs: 500 })).toMatchObject({
      timedOut: true,
    });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect((await h.run(call))?.stdout).toBe(" 'y'\n");
    expect(h.pid).not.toBe(stopped);
    expect(await h.run({ ...call, env: { 'NOT A NAME': '1' } })).toBe(
      undefined,
    );
    await expect(
      h.run({ ...call, args: ['rev-parse', '--sq-quote', 'z'.repeat(2000)] }),
    ).rejects.toThrow(/maxBuffer/);
    h.stop();
  });

  it('a commit message made of text goes to git as a file of the helper (the call stays plain), byte for byte', async () => {
    useSpawnHelper(join(dir, 'h4'));
    const message =
      'issue #7: fix $(id) `id` "quotes" it\'s\ntwo lines ; exit 3 #';
    const file = textArgumentFile('commit-message', message);
    expect(file).toBe(join(dir, 'h4', 'commit-message'));
    await runGit(['commit', '--allow-empty', '--no-verify', '-F', file!], {
      cwd: repo.dir,
      env: {
        GIT_AUTHOR_NAME: 'a',
        GIT_AUTHOR_EMAIL: 'a@b',
        GIT_COMMITTER_NAME: 'a',
        GIT_COMMITTER_EMAIL: 'a@b',
      },
    });
    const got = await runGit(['log', '-1', '--format=%B'], { cwd: repo.dir });
    expect(got.stdout).toBe(`${message}\n\n`);
    // A link planted where the file goes (the slot's run directory) is replaced, not followed.
    const target = join(dir, 'not-yours');
    writeFileSync(target, 'kept\n');
    rmSync(file!);
    symlinkSync(target, file!);
    expect(textArgumentFile('commit-message', 'next')).toBe(file);
    expect(readFileSync(target, 'utf8')).toBe('kept\n');
    expect(readFileSync(file!, 'utf8')).toBe('next');
    expect(existsSync('/tmp/sup-helper-pwned')).toBe(false);
  });
});
