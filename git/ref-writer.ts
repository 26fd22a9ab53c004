/**
 * Ref writes without a git process per write: one long-lived `git update-ref --stdin`, each write
 * a transaction of its own (`start`, `update`, `prepare`, `commit`; git answers each on stdout).
 * Forking a git per write cost the recorder ~8 ms of CPU per result (the fork of a large Node
 * process, git's start-up with its safe-config arguments); a line on a pipe costs nothing like it.
 *
 * Every guarantee of `git update-ref <ref> <oid>` holds, because it is the same git code: the ref
 * is written under git's own lock (`<ref>.lock`, created exclusively, renamed into place), so
 * other processes (the lander, users) updating refs stay correct; a branch (`refs/heads/`) is
 * refused unless the object exists and is a commit; `commit: ok` is only printed, and flushed,
 * once the ref is in place, so a caller that writes SQLite afterwards never records a branch git
 * does not have. New objects (runners commit into the shared object store all the time) are seen:
 * git looks for loose objects on disk and rescans the packs when an object is missing.
 *
 * git ends the process on any refused update (`fatal: prepare: ...`) and removes its lock on the
 * way out; the write is rejected with git's message and the next one starts a new process. A
 * process found gone before it began our transaction (killed, crashed while idle) is replaced and
 * the write sent once more: nothing of it reached git. Writes go one at a time; each has the
 * command timeout, after which the process is killed (as `runGit` kills a git that hangs).
 *
 * Only an object id and a ref name checked here reach git's stdin: a line break in either would
 * be a second command.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import {
  DEFAULT_GIT_TIMEOUT_MS,
  GitError,
  gitUser,
  safeConfigArgs,
  safeGitEnv,
} from './runner.js';

const OID = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;
/** A full ref name without space or control characters (git checks the rest of its format). */
const REF = /^refs\/[\x21-\x7e]+$/;
const REPLIES = ['start: ok', 'prepare: ok', 'commit: ok'] as const;
const ARGS = ['update-ref', '--stdin'] as const;

interface Session {
  child: ChildProcessWithoutNullStreams;
  gone: boolean;
  stderr: string;
  /** The transaction in flight reads git's replies; a reply without one is a desync. */
  onLine: ((line: string) => void) | undefined;
  onGone: ((code: number | null, signal: string | null) => void) | undefined;
}

/** Outcome of one transaction: `started` is whether git acknowledged its `start`. */
type Sent = { ok: true } | { ok: false; started: boolean; error: GitError };

export class RefWriter {
  private session: Session | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** Processes started so far (tests and metrics: one per refusal, not one per write). */
  starts = 0;

  constructor(
    private readonly cwd: string,
    private readonly timeoutMs: () => number = () => DEFAULT_GIT_TIMEOUT_MS,
  ) {}

  /**
   * Sets `ref` to `oid` (no old value is checked, as `git update-ref <ref> <oid>`). Resolves once
   * git has committed the write; rejects with a GitError when git refused it or did not answer.
   */
  update(ref: string, oid: string): Promise<void> {
    if (!REF.test(ref) || !OID.test(oid))
      return Promise.reject(
        new GitError(
          `not a ref name and object id: ${JSON.stringify(ref)} ${JSON.stringify(oid)}`,
          ARGS,
          null,
          '',
          false,
          '',
        ),
      );
    const write = this.chain.then(() => this.write(ref, oid));
    this.chain = write.catch(() => undefined);
    return write;
  }

  /** Lets git exit after the writes already asked for; later writes are rejected. */
  async close(): Promise<void> {
    this.closed = true;
    await this.chain;
    const s = this.session;
    this.session = undefined;
    if (!s || s.gone) return;
    const exited = new Promise<void>((resolve) => {
      s.onGone = () => resolve();
    });
    s.child.stdin.end();
    const timer = setTimeout(() => s.child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }

  private async write(ref: string, oid: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (this.closed)
        throw new GitError(
          'the ref writer is closed',
          ARGS,
          null,
          '',
          false,
          '',
        );
      const sent = await this.transaction(this.current(), ref, oid);
      if (sent.ok) return;
      if (!sent.started && attempt === 0) continue;
      throw sent.error;
    }
  }

  private current(): Session {
    if (this.session && !this.session.gone) return this.session;
    const user = gitUser();
    const child = spawn('git', [...safeConfigArgs(), ...ARGS], {
      cwd: this.cwd,
      env: safeGitEnv(),
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(user ? { uid: user.uid, gid: user.gid } : {}),
    });
    this.starts += 1;
    const s: Session = {
      child,
      gone: false,
      stderr: '',
      onLine: undefined,
      onGone: undefined,
    };
    let pending = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      pending += chunk;
      let nl;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (s.onLine) s.onLine(line);
        else child.kill('SIGKILL');
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      s.stderr = (s.stderr + chunk).slice(-8192);
    });
    // A write to a process that just died: its end is reported by 'close'.
    child.stdin.on('error', () => undefined);
    const gone = (code: number | null, signal: string | null) => {
      if (s.gone) return;
      s.gone = true;
      s.onGone?.(code, signal);
    };
    child.on('error', (err) => {
      s.stderr ||= err.message;
      gone(null, null);
    });
    child.on('close', gone);
    // An idle writer does not keep the process alive; a write in flight has its timer.
    child.unref();
    for (const stream of [child.stdin, child.stdout, child.stderr])
      (stream as unknown as { unref?: () => void }).unref?.();
    this.session = s;
    return s;
  }

  private transaction(s: Session, ref: string, oid: string): Promise<Sent> {
    const timeoutMs = this.timeoutMs();
    return new Promise((resolve) => {
      let seen = 0;
      let timedOut = false;
      s.stderr = '';
      const finish = (sent: Sent) => {
        clearTimeout(timer);
        s.onLine = undefined;
        s.onGone = undefined;
        resolve(sent);
      };
      const fail = (message: string, exitCode: number | null) =>
        finish({
          ok: false,
          started: seen > 0,
          error: new GitError(message, ARGS, exitCode, s.stderr, timedOut, ''),
        });
      const timer = setTimeout(() => {
        timedOut = true;
        s.child.kill('SIGKILL');
      }, timeoutMs);
      s.onLine = (line) => {
        if (line === REPLIES[seen]) {
          seen += 1;
          if (seen === REPLIES.length) finish({ ok: true });
          return;
        }
        s.child.kill('SIGKILL');
        fail(`git update-ref --stdin answered ${JSON.stringify(line)}`, null);
      };
      s.onGone = (code, signal) =>
        fail(
          timedOut
            ? `git update-ref timed out after ${timeoutMs} ms (killed)`
            : s.stderr.trim() ||
                `git update-ref --stdin ended (${signal ?? `exit ${code}`})`,
          code,
        );
      if (s.gone) return s.onGone(null, null);
      s.child.stdin.write(`start\nupdate ${ref} ${oid}\nprepare\ncommit\n`);
    });
  }
}
