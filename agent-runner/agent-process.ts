import { spawn, type ChildProcess } from 'node:child_process';
import { ENTER_CGROUP_SH } from '../contract/agent-containment.js';
import { attemptEndLine } from '../contract/attempt-log.js';
import type { LineStamper } from './line-stamper.js';
import type { EventRenderer } from './event-render.js';
import type { AgentGuard } from './agent-guard.js';
import { changedSince } from './progress-scan.js';

export type KillReason =
  'lease-lost' | 'shutdown' | 'no-progress' | 'superseded' | 'budget' | 'disk';

export interface AgentExit {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  killedFor: KillReason | undefined;
  /** Set when the command could not be started at all. */
  spawnError: Error | undefined;
}

export interface AgentProcessOptions {
  command: string;
  cwd: string;
  env: Record<string, string>;
  /** The attempt's log: every line of output, stamped with the time it arrived. */
  log: LineStamper;
  /** The runner's own log (its stdout), which gets a line when the agent exits. */
  echo?: NodeJS.WritableStream;
  /** Sees every chunk of output too, as printed (usage-limit and cost scanning). */
  onOutput?: (chunk: Buffer) => void;
  /** What the log and the echo get instead of the agent's JSON events (readable lines). */
  render?: EventRenderer;
  progressTimeoutMs: number;
  killGraceMs: number;
  /** Run it under this uid/gid (the runner is root; all capabilities go with the switch). */
  user?: { uid: number; gid: number };
  /** Kills the agent's process group if the runner dies. */
  guard: AgentGuard;
}

/**
 * The agent's wrapper: enters the slot's cgroup (`SUPERVISOR_AGENT_CGROUP`, where the runner has
 * one: contract/agent-containment.ts) before anything forks, gives its pid — the agent's process
 * group — to the runner's guard on fd 3 (agent-guard.ts: the group is killed when the runner
 * dies, kill -9 included), closes that pipe, and becomes the agent command's shell. No process of
 * its own stays: the agent is this process, and the guard is the runner's, started once.
 */
const GUARDED_WRAPPER = [
  // First of all, before anything forks: into the slot's cgroup, which every descendant inherits.
  ...ENTER_CGROUP_SH,
  // The kernel's first choice when memory runs out, before the runner (whose death would end a
  // container and cost the slot a restart) or anything else of the user's; inherited by every
  // descendant. Raising it needs no privilege.
  '{ echo 1000 > /proc/self/oom_score_adj; } 2>/dev/null',
  'cmd=$SUPERVISOR_AGENT_COMMAND',
  'unset SUPERVISOR_AGENT_COMMAND',
  // A guard that is gone (it is restarted for the next job) must not kill the agent by SIGPIPE.
  'trap "" PIPE',
  'echo $$ >&3 2>/dev/null',
  'trap - PIPE',
  'exec /bin/sh -c "$cmd" 3>&-',
].join('\n');

/**
 * The user's agent command, run with `/bin/sh -c` in its own process group so that it and
 * every child it starts can be killed together. Issue content never reaches the command
 * string; it comes in through `env` and files.
 */
export class AgentProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<AgentExit>;
  private killedFor: KillReason | undefined;
  private lastProgress = Date.now();
  private checkingFiles = false;
  private progressTimer: NodeJS.Timeout | undefined;
  private killTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: AgentProcessOptions) {
    let spawnError: Error | undefined;
    this.child = spawn('/bin/sh', ['-c', GUARDED_WRAPPER], {
      cwd: opts.cwd,
      env: { ...opts.env, SUPERVISOR_AGENT_COMMAND: opts.command },
      detached: true,
      ...(opts.user ? { uid: opts.user.uid, gid: opts.user.gid } : {}),
      // fd 3: the guard's pipe, for the wrapper's one line (it is closed before the agent runs).
      stdio: ['ignore', 'pipe', 'pipe', opts.guard.pipe()],
    });
    this.child.on('error', (err) => {
      spawnError = err;
    });
    // The output is written once, to the attempt's log; `supervisor logs` splices it into the
    // runner's log between the attempt's start and end lines (supervisor/logs/slot-log.ts).
    // The agents' JSON events go there as readable lines (the parsing sees them as printed).
    const onData = (chunk: Buffer) => {
      this.lastProgress = Date.now();
      const shown = opts.render ? opts.render.write(chunk) : chunk;
      if (shown.length) opts.log.write(shown);
      opts.onOutput?.(chunk);
    };
    this.child.stdout?.on('data', onData);
    this.child.stderr?.on('data', onData);
    const tick = Math.max(
      50,
      Math.min(1000, Math.floor(opts.progressTimeoutMs / 4)),
    );
    this.progressTimer = setInterval(() => void this.checkProgress(), tick);

    this.exited = new Promise<AgentExit>((resolve) => {
      const finish = (
        exitCode: number | null,
        signal: NodeJS.Signals | null,
      ) => {
        this.stopWatching();
        // The agent's stragglers (background children) never outlive it.
        this.signalGroup('SIGKILL');
        opts.guard.disarm();
        if (opts.render) {
          const rest = opts.render.end();
          if (rest.length) opts.log.write(rest);
        }
        // The attempt's end, as its start was marked: `supervisor logs` shows both. A last
        // line without a newline goes into the attempt's log first.
        opts.log.end();
        opts.echo?.write(
          `${new Date().toISOString()} ${attemptEndLine(`${exitCode !== null ? `exited ${exitCode}` : `killed by ${signal ?? 'a signal'}`}${this.killedFor ? ` (${this.killedFor})` : ''}`)}\n`,
        );
        resolve({ exitCode, signal, killedFor: this.killedFor, spawnError });
      };
      this.child.once('exit', finish);
      this.child.once('error', () => {
        if (this.child.pid === undefined) finish(null, null);
      });
    });
  }

  /**
   * Silent for the whole timeout: before killing, look for file changes in the worktree since
   * the last sign of life (a change counts as progress, as output does).
   */
  private async checkProgress(): Promise<void> {
    const timeout = this.opts.progressTimeoutMs;
    if (
      this.checkingFiles ||
      this.killedFor !== undefined ||
      Date.now() - this.lastProgress <= timeout
    )
      return;
    this.checkingFiles = true;
    try {
      const changed = await changedSince(
        this.opts.cwd,
        this.lastProgress,
      ).catch(() => undefined);
      if (changed !== undefined)
        this.lastProgress = Math.max(
          this.lastProgress,
          Math.min(changed, Date.now()),
        );
      if (
        Date.now() - this.lastProgress > timeout &&
        this.child.exitCode === null &&
        this.child.signalCode === null
      )
        this.kill('no-progress');
    } finally {
      this.checkingFiles = false;
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get killReason(): KillReason | undefined {
    return this.killedFor;
  }

  /** SIGTERM to the whole group, SIGKILL after the grace period. Idempotent. */
  kill(reason: KillReason, graceMs = this.opts.killGraceMs): void {
    if (this.killedFor === undefined) this.killedFor = reason;
    this.signalGroup(graceMs === 0 ? 'SIGKILL' : 'SIGTERM');
    if (graceMs > 0 && !this.killTimer) {
      this.killTimer = setTimeout(() => this.signalGroup('SIGKILL'), graceMs);
      this.killTimer.unref();
    }
  }

  private signalGroup(signal: NodeJS.Signals): void {
    const pid = this.child.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // Already gone.
    }
  }

  private stopWatching(): void {
    if (this.progressTimer) clearInterval(this.progressTimer);
    if (this.killTimer) clearTimeout(this.killTimer);
  }
}
