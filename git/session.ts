/**
 * One long-lived git process that answers requests on stdin (`update-ref --stdin`, `cat-file
 * --batch`), for the supervisor's per-result git work: forking a git per request cost ~3 ms of
 * CPU each (the fork of a large Node process, git's start-up with its safe-config arguments);
 * a line on a pipe costs next to nothing.
 *
 * The process runs as `runGit` runs git (safe configuration, no GIT_* from our environment, the
 * same user). One process serves requests one after the other. Each has the command timeout,
 * after which the process is killed and the request rejected. A process that ends (killed,
 * crashed, or git's own `fatal:`) is replaced by the next request; a request whose process ended
 * before printing anything for it (not timed out) is sent once more to a new one (nothing of it
 * was done: git answers each command as it finishes it), any other is rejected with git's
 * stderr. An idle session does not keep Node running.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import {
  DEFAULT_GIT_TIMEOUT_MS,
  GitError,
  gitUser,
  safeConfigArgs,
  safeGitEnv,
} from './runner.js';

/** What a request reads from git's output: undefined until enough has arrived. */
export type Take<T> = (out: Buffer) => { value: T; used: number } | undefined;

interface Proc {
  child: ChildProcessWithoutNullStreams;
  gone: boolean;
  out: Buffer;
  stderr: string;
  /** The request in flight reads the output; output without one is a desync. */
  onOutput: (() => void) | undefined;
  onGone: (() => void) | undefined;
}

export class GitSession {
  /** The process that waits for the next request (at most one is kept idle). */
  private idle: Proc | undefined;
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Processes with a request in flight. */
  private readonly busy = new Set<Proc>();
  private closed = false;
  /** Processes started so far (one per failure or overlap, not one per request). */
  starts = 0;

  constructor(
    private readonly cwd: string,
    private readonly args: readonly string[],
    private readonly timeoutMs: () => number = () => DEFAULT_GIT_TIMEOUT_MS,
  ) {}

  /**
   * Sends `input` (the caller checks that it holds nothing but its commands) and resolves with
   * what `take` reads from git's answer; rejects with a GitError when git ends or times out.
   * A request made while another is still in flight (one its caller gave up waiting for, a hung
   * git) goes to a process of its own rather than waiting behind it.
   */
  request<T>(input: string, take: Take<T>): Promise<T> {
    const run = (async () => {
      for (let attempt = 0; ; attempt++) {
        if (this.closed) throw this.error(`git ${this.args[0]} was closed`);
        const p = this.take();
        this.busy.add(p);
        const r = await this.send(p, input, take);
        this.busy.delete(p);
        this.release(p);
        if (r.ok) return r.value;
        if (!r.answered && !r.error.timedOut && attempt === 0) continue;
        throw r.error;
      }
    })();
    const tracked = run.catch(() => undefined);
    this.inFlight.add(tracked);
    void tracked.then(() => this.inFlight.delete(tracked));
    return run;
  }

  /**
   * Lets git exit after the requests already made (a request still without an answer after
   * `graceMs` is ended: its git is killed, as at its timeout); later requests are rejected.
   */
  async close(graceMs = 5_000): Promise<void> {
    this.closed = true;
    const p = this.idle;
    this.idle = undefined;
    const idleEnded = p ? this.end(p) : Promise.resolve();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(this.inFlight),
      new Promise((r) => (timer = setTimeout(r, graceMs))),
    ]);
    clearTimeout(timer);
    for (const b of this.busy) this.kill(b);
    await Promise.all(this.inFlight);
    await idleEnded;
  }

  /** The pid of the idle process (tests). */
  get pid(): number | undefined {
    return this.idle && !this.idle.gone ? this.idle.child.pid : undefined;
  }

  /** Kills `p` and is done with it at once (a hung git may have children holding its pipes). */
  private kill(p: Proc): void {
    p.child.kill('SIGKILL');
    if (p.gone) return;
    p.gone = true;
    p.onGone?.();
  }

  private take(): Proc {
    const p = this.idle;
    this.idle = undefined;
    return p && !p.gone ? p : this.spawn();
  }

  private release(p: Proc): void {
    if (p.gone) return;
    if (!this.idle && !this.closed) this.idle = p;
    else void this.end(p);
  }

  private async end(p: Proc): Promise<void> {
    if (p.gone) return;
    const exited = new Promise<void>((resolve) => {
      p.onGone = resolve;
      p.child.once('exit', () => resolve());
    });
    p.child.stdin.end();
    const timer = setTimeout(() => p.child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }

  private error(message: string, stderr = '', timedOut = false): GitError {
    return new GitError(message, this.args, null, stderr, timedOut, '');
  }

  private spawn(): Proc {
    const user = gitUser();
    const child = spawn('git', [...safeConfigArgs(), ...this.args], {
      cwd: this.cwd,
      env: safeGitEnv(),
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(user ? { uid: user.uid, gid: user.gid } : {}),
    });
    this.starts += 1;
    const p: Proc = {
      child,
      gone: false,
      out: Buffer.alloc(0),
      stderr: '',
      onOutput: undefined,
      onGone: undefined,
    };
    child.stdout.on('data', (chunk: Buffer) => {
      p.out = p.out.length ? Buffer.concat([p.out, chunk]) : chunk;
      if (p.onOutput) p.onOutput();
      else child.kill('SIGKILL');
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      p.stderr = (p.stderr + chunk).slice(-8192);
    });
    // A write to a process that just ended: its end is reported by 'close'.
    child.stdin.on('error', () => undefined);
    const gone = () => {
      if (p.gone) return;
      p.gone = true;
      p.onGone?.();
    };
    child.on('error', (err) => {
      p.stderr ||= err.message;
      gone();
    });
    child.on('close', gone);
    // Idle, it does not keep the process alive; a request in flight has its timer.
    child.unref();
    for (const stream of [child.stdin, child.stdout, child.stderr])
      (stream as unknown as { unref?: () => void }).unref?.();
    return p;
  }

  private send<T>(
    p: Proc,
    input: string,
    take: Take<T>,
  ): Promise<
    { ok: true; value: T } | { ok: false; answered: boolean; error: GitError }
  > {
    const timeoutMs = this.timeoutMs();
    const name = `git ${this.args.join(' ')}`;
    return new Promise((resolve) => {
      let answered = false;
      let timedOut = false;
      p.stderr = '';
      const finish = (
        r:
          | { ok: true; value: T }
          | { ok: false; answered: boolean; error: GitError },
      ) => {
        clearTimeout(timer);
        p.onOutput = undefined;
        p.onGone = undefined;
        resolve(r);
      };
      const timer = setTimeout(() => {
        timedOut = true;
        this.kill(p);
      }, timeoutMs);
      p.onOutput = () => {
        answered = true;
        let got;
        try {
          got = take(p.out);
        } catch (err) {
          p.child.kill('SIGKILL');
          return finish({
            ok: false,
            answered,
            error: this.error(`${name}: ${(err as Error).message}`),
          });
        }
        if (!got) return;
        p.out = p.out.subarray(got.used);
        finish({ ok: true, value: got.value });
      };
      p.onGone = () =>
        finish({
          ok: false,
          answered,
          error: this.error(
            timedOut
              ? `${name} timed out after ${timeoutMs} ms (killed)`
              : p.stderr.trim() || `${name} ended`,
            p.stderr,
            timedOut,
          ),
        });
      if (p.gone) return p.onGone();
      p.child.stdin.write(input);
    });
  }
}
