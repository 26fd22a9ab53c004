/**
 * The recorder's long-lived `git update-ref --stdin` (git/ref-writer.ts) and the branch publisher
 * on it, against real git: one process for many writes, objects written after it started (loose
 * and packed) seen, anything but a commit we have refused as a branch, git's lock respected,
 * a dead process replaced.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { RefWriter } from '../../git/ref-writer.js';
import { BranchPublisher } from '../../supervisor/recorder/branch-publisher.js';
import { ResultRefError } from '../../supervisor/results.js';
import type { JobResult } from '../../contract/job.js';
import { git, tempRepo } from '../helpers/repo.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function setup() {
  const repo = tempRepo();
  const refs = new RefWriter(repo.dir, () => 10_000);
  cleanups.push(repo.cleanup);
  cleanups.push(() => refs.close());
  let n = 0;
  const commit = () => {
    n += 1;
    writeFileSync(join(repo.dir, 'f.txt'), `${n}\n`);
    git(repo.dir, 'add', 'f.txt');
    git(repo.dir, 'commit', '-qm', `c${n}`);
    return git(repo.dir, 'rev-parse', 'HEAD');
  };
  const tip = (ref: string) => {
    try {
      return git(repo.dir, 'rev-parse', '--verify', '-q', ref);
    } catch {
      return undefined;
    }
  };
  return { dir: repo.dir, refs, commit, tip };
}

function result(commitSha: string): JobResult {
  return {
    agentId: 'agent-001',
    attempt: 1,
    exitCode: 0,
    baseSha: '0'.repeat(40),
    commitSha,
    filesChanged: 1,
    insertions: 1,
    deletions: 0,
    durationMs: 1,
    logPath: '/dev/null',
    startedAt: 0,
    finishedAt: 1,
  };
}

describe('RefWriter', () => {
  it('writes many refs with one git process, including objects made after it started', async () => {
    const w = setup();
    const first = w.commit();
    await w.refs.update('refs/heads/issue/1', first);
    expect(w.tip('issue/1')).toBe(first);
    const loose = w.commit();
    await w.refs.update('refs/heads/issue/2', loose);
    expect(w.tip('issue/2')).toBe(loose);
    // Packed while the writer runs (gc moves every object into a new pack).
    const packed = w.commit();
    git(w.dir, 'repack', '-adq');
    git(w.dir, 'prune-packed');
    await w.refs.update('refs/heads/issue/3', packed);
    expect(w.tip('issue/3')).toBe(packed);
    // Moved again: no old value is checked, as `git update-ref <ref> <oid>`.
    await w.refs.update('refs/heads/issue/1', packed);
    expect(w.tip('issue/1')).toBe(packed);
    expect(w.refs.starts).toBe(1);
  });

  it('refuses a branch at a missing object, a tree or a blob; the next write works', async () => {
    const w = setup();
    const main = w.tip('main')!;
    const tree = git(w.dir, 'rev-parse', 'HEAD^{tree}');
    const blob = git(w.dir, 'rev-parse', 'HEAD:README.md');
    for (const [i, oid] of [
      ['1', '1'.repeat(40)],
      ['2', tree],
      ['3', blob],
    ] as const) {
      await expect(w.refs.update(`refs/heads/issue/${i}`, oid)).rejects.toThrow(
        /nonexistent object|non-commit object/,
      );
      expect(w.tip(`issue/${i}`)).toBeUndefined();
    }
    await w.refs.update('refs/heads/issue/4', main);
    expect(w.tip('issue/4')).toBe(main);
    expect(w.tip('main')).toBe(main);
  });

  it('sends nothing but a ref name and an object id to git', async () => {
    const w = setup();
    const main = w.tip('main')!;
    for (const [ref, oid] of [
      ['refs/heads/issue/1', `${main}\ndelete refs/heads/main`],
      ['refs/heads/issue/1', '-d'],
      [`refs/heads/issue/1 ${main}\ndelete refs/heads/main`, main],
      ['HEAD', main],
    ] as const)
      await expect(w.refs.update(ref, oid)).rejects.toThrow(/not a ref name/);
    expect(w.tip('main')).toBe(main);
    expect(w.tip('issue/1')).toBeUndefined();
    expect(w.refs.starts).toBe(0);
  });

  it("respects git's lock: a ref another process holds is not written", async () => {
    const w = setup();
    const main = w.tip('main')!;
    const lock = join(w.dir, '.git', 'refs', 'heads', 'issue', '7.lock');
    git(w.dir, 'update-ref', 'refs/heads/issue/6', main);
    writeFileSync(lock, '');
    await expect(w.refs.update('refs/heads/issue/7', main)).rejects.toThrow(
      /lock/,
    );
    expect(w.tip('issue/7')).toBeUndefined();
    rmSync(lock);
    await w.refs.update('refs/heads/issue/7', main);
    expect(w.tip('issue/7')).toBe(main);
  });

  it('replaces a process that died while idle; after close, writes are refused', async () => {
    const w = setup();
    const main = w.tip('main')!;
    await w.refs.update('refs/heads/issue/1', main);
    const pid = w.refs.pid!;
    process.kill(pid, 'SIGKILL');
    await w.refs.update('refs/heads/issue/2', main);
    expect(w.tip('issue/2')).toBe(main);
    expect(w.refs.starts).toBe(2);
    await w.refs.close();
    expect(() => process.kill(pid, 0)).toThrow();
    await expect(w.refs.update('refs/heads/issue/3', main)).rejects.toThrow(
      /closed/,
    );
  });

  it('a write that gets no answer within the timeout is rejected and its git killed; others do not wait behind it', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const refs = new RefWriter(repo.dir, () => 1_500);
    cleanups.push(() => refs.close());
    const main = git(repo.dir, 'rev-parse', 'main');
    await refs.update('refs/heads/issue/1', main);
    const pid = refs.pid!;
    process.kill(pid, 'SIGSTOP');
    const t0 = Date.now();
    const hung = refs.update('refs/heads/issue/2', main);
    const hungOutcome = hung.then(
      () => 'written',
      (err: Error) => err.message,
    );
    await refs.update('refs/heads/issue/3', main);
    expect(Date.now() - t0).toBeLessThan(1_500);
    expect(git(repo.dir, 'rev-parse', 'issue/3')).toBe(main);
    expect(await hungOutcome).toMatch(/timed out after 1500 ms/);
    expect(refs.starts).toBe(2);
    await new Promise((r) => setTimeout(r, 100));
    expect(() => process.kill(pid, 0)).toThrow();
    await refs.update('refs/heads/issue/4', main);
    expect(refs.starts).toBe(2);
  });

  it('close does not wait past its grace for a write git never answers', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const refs = new RefWriter(repo.dir, () => 60_000);
    const main = git(repo.dir, 'rev-parse', 'main');
    await refs.update('refs/heads/issue/1', main);
    const pid = refs.pid!;
    process.kill(pid, 'SIGSTOP');
    const hung = refs.update('refs/heads/issue/2', main).catch((e: Error) => e);
    const t0 = Date.now();
    await refs.close(200);
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(await hung).toBeInstanceOf(Error);
    await new Promise((r) => setTimeout(r, 100));
    expect(() => process.kill(pid, 0)).toThrow();
  });
});

describe('BranchPublisher', () => {
  it('publishes a commit we have; refuses anything else as a ResultRefError; a lock is an error, not a refusal', async () => {
    const w = setup();
    const pub = new BranchPublisher(w.dir, undefined, w.refs);
    const sha = w.commit();
    expect(await pub.publish('issue-1', 1, result(sha))).toEqual({
      branch: 'issue/1',
      incoming: undefined,
    });
    expect(w.tip('issue/1')).toBe(sha);
    const tree = git(w.dir, 'rev-parse', 'HEAD^{tree}');
    for (const bogus of ['1'.repeat(40), tree, 'HEAD', '-d'])
      await expect(
        pub.publish('issue-2', 2, result(bogus)),
      ).rejects.toBeInstanceOf(ResultRefError);
    expect(w.tip('issue/2')).toBeUndefined();
    writeFileSync(join(w.dir, '.git', 'refs', 'heads', 'issue', '3.lock'), '');
    const locked = await pub.publish('issue-3', 3, result(sha)).catch((e) => e);
    expect(locked).toBeInstanceOf(Error);
    expect(locked).not.toBeInstanceOf(ResultRefError);
  });
});
