/**
 * A small shell, started once, that starts git for a process that is large: every fork of a
 * ~70 MB Node process copies its page tables and makes each page it writes afterwards fault
 * once, ~2 ms of CPU per git call on the development machine, where a fork of this shell costs a
 * tenth of that (docs/benchmarks.md, "Throughput"). The runner runs 4 git calls per job.
 *
 * One call at a time: the shell reads a request line, starts git in a subshell with its output
 * in two files of its own directory, prints git's pid, waits, prints the exit status. A call
 * made while another is running, or while the shell cannot be used, is started directly by the
 * caller (`runGit` falls back to `execFile`). Nothing changes in what git runs with: the same
 * arguments (the safe configuration first), the caller's environment as `safeGitEnv` makes it,
 * the caller's timeout with SIGKILL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  constants,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';

/**
 * Reads one request a line and evaluates it; `$nl` is a newline (arguments that contain one
 * are quoted with it, as a request is one line). `run` execs the command the helper was made
 * for (git and the safe configuration): a request carries only the call's own arguments, as
 * the shell reads its input a byte per system call.
 */
function helperScript(command: readonly string[]): string {
  return [
    "nl='",
    "'",
    `run() { exec ${command.map(shellQuote).join(' ')} "$@"; }`,
    'while IFS= read -r req; do eval "$req"; done',
  ].join('\n');
}

/** A request's arguments, quoted for the shell: nothing in them is evaluated. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`).replace(/\n/g, `'"$nl"'`)}'`;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** What an argument may consist of to go through the shell (quoted all the same). */
const PLAIN = /^[A-Za-z0-9_@%+=:,./~^{}-]*$/;

export interface HelperCall {
  /** After the helper's command (`git -c <safe> …`). */
  args: readonly string[];
  cwd: string;
  /** Exported for this call only, over the helper's own environment. */
  env: Record<string, string>;
  timeoutMs: number;
  maxBuffer: number;
}

export interface HelperResult {
  stdout: string;
  stderr: string;
  /** git's exit status as the shell saw it (128 + n when a signal ended it). */
  status: number;
  timedOut: boolean;
}

export class SpawnHelper {
  private child: ChildProcess | undefined;
  private busy = false;
  private lines: string[] = [];
  private waiting: ((line: string | undefined) => void) | undefined;
  private readonly out: string;
  private readonly err: string;

  /**
   * @param dir its own directory (emptied now): git's output goes there
   * @param env the environment the shell and every git it starts get
   * @param command what every call runs, before the call's arguments (`git`, the safe `-c`s)
   */
  constructor(
    private readonly dir: string,
    private readonly env: Record<string, string>,
    private readonly command: readonly string[],
  ) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.out = join(dir, 'out');
    this.err = join(dir, 'err');
  }

  /**
   * Runs the call, or returns undefined without starting anything when it cannot be taken now
   * (another call is running, or its arguments cannot go through the shell): the caller starts
   * git itself then.
   */
  async run(call: HelperCall): Promise<HelperResult | undefined> {
    if (this.busy || !Object.keys(call.env).every((k) => ENV_NAME.test(k)))
      return undefined;
    // Only plain words reach the shell (object ids, refs, options, paths): an argument or an
    // environment value with any other character (a commit message made of an issue's title, an
    // author name read from an agent's commit, a file name the repository chose) is started
    // directly, so text written by strangers is never part of a shell line,
    // however well quoted.
    if (
      ![call.cwd, ...call.args, ...Object.values(call.env)].every((a) =>
        PLAIN.test(a),
      )
    )
      return undefined;
    if (!existsSync(call.cwd)) return undefined; // the caller's spawn error says it best
    const child = this.shell();
    if (!child) return undefined;
    this.busy = true;
    // The shell's output keeps the process alive while a call waits on it, and only then.
    const stdout = child.stdout as unknown as { ref(): void; unref(): void };
    stdout.ref();
    try {
      return await this.exchange(child, call);
    } finally {
      stdout.unref();
      this.busy = false;
    }
  }

  private async exchange(
    child: ChildProcess,
    call: HelperCall,
  ): Promise<HelperResult | undefined> {
    const exports = Object.entries(call.env)
      .map(([k, v]) => ` && export ${k}=${shellQuote(v)}`)
      .join('');
    const argv = ['run', ...call.args.map(shellQuote)].join(' ');
    this.lines = [];
    child.stdin!.write(
      `(cd -- ${shellQuote(call.cwd)}${exports} && ${argv}) </dev/null >${shellQuote(this.out)} 2>${shellQuote(this.err)} & ` +
        `echo "$!"; wait "$!"; echo "= $?"\n`,
    );
    let timedOut = false;
    let pid: number | undefined;
    // At the timeout git is killed, and the shell too: a shell that does not answer (stopped,
    // stuck) must not hold the caller longer than git itself could have. The next call starts
    // a new one.
    const timer = setTimeout(() => {
      timedOut = true;
      if (pid !== undefined) kill(pid);
      child.kill('SIGKILL');
    }, call.timeoutMs);
    const killed: HelperResult = {
      stdout: '',
      stderr: '',
      status: 128 + 9,
      timedOut: true,
    };
    try {
      const started = await this.line();
      if (started === undefined)
        // The shell died before it said it started git (killed by someone else, almost surely
        // before forking): the caller starts git itself.
        return timedOut ? killed : undefined;
      pid = Number(started);
      if (timedOut) kill(pid);
      const done = await this.line();
      if (done === undefined && timedOut) return killed;
      if (done === undefined || !done.startsWith('= '))
        throw new Error(
          `the git helper exited while git ${call.args.find((a) => !a.startsWith('-') && !a.includes('=')) ?? ''} ran (pid ${pid})`,
        );
      return {
        stdout: readCapped(this.out, call.maxBuffer),
        stderr: readCapped(this.err, call.maxBuffer),
        status: Number(done.slice(2)),
        timedOut,
      };
    } finally {
      clearTimeout(timer);
    }
  }

  /** The shell, started (again) when needed; undefined when it cannot be. */
  private shell(): ChildProcess | undefined {
    const live = this.child;
    if (
      live?.stdin &&
      !live.stdin.destroyed &&
      live.exitCode === null &&
      live.signalCode === null
    )
      return live;
    let child: ChildProcess;
    try {
      child = spawn('/bin/sh', ['-c', helperScript(this.command)], {
        // Outside every worktree: a slot's sweep (processes by cwd) never takes it for an agent's.
        cwd: '/',
        env: this.env,
        stdio: ['pipe', 'pipe', 'ignore'],
      });
    } catch {
      return undefined;
    }
    if (child.pid === undefined) return undefined;
    let buffered = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      if (this.child !== child) return; // a shell replaced since: nobody waits on it
      buffered += d;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        this.deliver(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
      }
    });
    child.stdout!.on('close', () => {
      if (this.child !== child) return;
      this.child = undefined;
      this.deliver(undefined);
    });
    child.stdin!.on('error', () => undefined);
    child.on('error', () => undefined);
    // Neither keeps the process alive; a call's timer does while it runs.
    child.unref();
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
    this.child = child;
    return child;
  }

  private deliver(line: string | undefined): void {
    const w = this.waiting;
    if (w) {
      this.waiting = undefined;
      w(line);
    } else if (line !== undefined) this.lines.push(line);
  }

  private line(): Promise<string | undefined> {
    const next = this.lines.shift();
    if (next !== undefined) return Promise.resolve(next);
    if (!this.child) return Promise.resolve(undefined);
    return new Promise((resolve) => (this.waiting = resolve));
  }

  /**
   * Writes `text` to a file of the helper's own directory and returns its path, for git to read
   * (`commit -F`): an argument made of text, as a path, stays plain. Undefined when the path
   * itself would not be.
   */
  textFile(name: string, text: string): string | undefined {
    const path = join(this.dir, name);
    if (!PLAIN.test(path)) return undefined;
    // Replaced, never followed: the helper's directory lies in the slot's run directory.
    rmSync(path, { force: true });
    const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = constants;
    const fd = openSync(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
    try {
      writeSync(fd, text);
    } finally {
      closeSync(fd);
    }
    return path;
  }

  /** The shell's pid while it runs. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Ends the shell (a running git finishes on its own). */
  stop(): void {
    this.child?.stdin?.end();
    this.child = undefined;
  }
}

function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
}

/** A file's text, refused past `max` bytes as execFile refuses output past its maxBuffer. */
function readCapped(path: string, max: number): string {
  const fd = openSync(path, 'r');
  try {
    if (fstatSync(fd).size > max)
      throw new RangeError(`git's output passed ${max} bytes (maxBuffer)`);
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}
