import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isOurAgent, readAgentRecord } from '../../contract/agent-record.js';
import {
  readContainmentRecord,
  sweepSlot,
} from '../../contract/agent-containment.js';
import type {
  AgentRuntime,
  RunnerExit,
  RunnerSpec,
  RuntimeAgent,
} from './runtime.js';
import { processExists as alive } from '../processes.js';

function defaultRunnerScript(): string {
  const compiled = fileURLToPath(
    new URL('../../agent-runner/main.js', import.meta.url),
  );
  // Loaded from the TypeScript sources (tests): run the compiled runner.
  return existsSync(compiled)
    ? compiled
    : fileURLToPath(
        new URL('../../dist/agent-runner/main.js', import.meta.url),
      );
}
const RUNNER_SCRIPT = defaultRunnerScript();
/**
 * A runner idles between jobs for most of its life: V8's memory-saving heap policy keeps an
 * idle runner near 70 MB instead of ~90 MB after a few hundred jobs, for a little more GC.
 */
export const RUNNER_NODE_FLAGS = ['--optimize-for-size'];

interface Tracked {
  agentId: string;
  pid: number;
  marker: string;
  startedAt: number;
  child: ChildProcess | undefined;
  stopping: boolean;
  exited: Promise<void>;
  markExited: () => void;
  poll: NodeJS.Timeout | undefined;
}

interface RunnerRecord {
  pid: number;
  marker: string;
  startedAt: number;
}

function isOurRunner(rec: RunnerRecord): boolean {
  if (!alive(rec.pid)) return false;
  try {
    return readFileSync(`/proc/${rec.pid}/environ`).includes(
      `SUPERVISOR_RUNNER_MARKER=${rec.marker}`,
    );
  } catch {
    return true; // No /proc: trust the pid file (macOS).
  }
}

/**
 * Runners as local child processes, one per slot, in their own sessions so they outlive a
 * crashed supervisor (the next one adopts them) and do not get the terminal's Ctrl-C.
 */
export class ProcessRuntime implements AgentRuntime {
  readonly kind = 'process' as const;
  private readonly tracked = new Map<string, Tracked>();
  private readonly listeners: Array<(e: RunnerExit) => void> = [];

  constructor(
    private readonly opts: {
      logDir: string;
      runDir: string;
      runnerScript?: string;
    },
  ) {}

  private runnerFile(agentId: string): string {
    return join(this.opts.runDir, agentId, 'runner.json');
  }

  logFile(agentId: string): string {
    return join(this.opts.logDir, `${agentId}.log`);
  }

  onExit(listener: (e: RunnerExit) => void): void {
    this.listeners.push(listener);
  }

  async adopt(agentIds: readonly string[]): Promise<RuntimeAgent[]> {
    const found: RuntimeAgent[] = [];
    for (const agentId of agentIds) {
      let rec: RunnerRecord | undefined;
      try {
        rec = JSON.parse(
          readFileSync(this.runnerFile(agentId), 'utf8'),
        ) as RunnerRecord;
      } catch {
        continue;
      }
      if (!isOurRunner(rec)) {
        // Its runner died while no supervisor watched: its agent must not outlive it.
        await this.killAgent(agentId);
        rmSync(this.runnerFile(agentId), { force: true });
        continue;
      }
      this.track(agentId, rec.pid, rec.marker, rec.startedAt, undefined);
      found.push({ agentId, pid: rec.pid, startedAt: rec.startedAt });
    }
    return found;
  }

  async start(spec: RunnerSpec): Promise<RuntimeAgent> {
    const { agentId } = spec;
    mkdirSync(join(this.opts.runDir, agentId), { recursive: true });
    mkdirSync(this.opts.logDir, { recursive: true });
    const fd = openSync(this.logFile(agentId), 'a');
    const marker = randomUUID();
    let child: ChildProcess;
    try {
      child = spawn(
        process.execPath,
        [...RUNNER_NODE_FLAGS, this.opts.runnerScript ?? RUNNER_SCRIPT],
        {
          detached: true,
          stdio: ['ignore', fd, fd],
          env: {
            ...process.env,
            SUPERVISOR_RUNNER_CONFIG: JSON.stringify(spec.config),
            SUPERVISOR_RUNNER_MARKER: marker,
            SUPERVISOR_TAKEOVER: spec.takeover ? '1' : '0',
          },
        },
      );
    } finally {
      closeSync(fd);
    }
    if (child.pid === undefined) {
      await new Promise((r) => child.once('error', r));
      throw new Error(`could not start the runner for ${agentId}`);
    }
    child.unref();
    const startedAt = Date.now();
    writeFileSync(
      this.runnerFile(agentId),
      JSON.stringify({
        pid: child.pid,
        marker,
        startedAt,
      } satisfies RunnerRecord),
    );
    this.track(agentId, child.pid, marker, startedAt, child);
    return { agentId, pid: child.pid, startedAt };
  }

  private track(
    agentId: string,
    pid: number,
    marker: string,
    startedAt: number,
    child: ChildProcess | undefined,
  ): void {
    let markExited!: () => void;
    const exited = new Promise<void>((r) => (markExited = r));
    const t: Tracked = {
      agentId,
      pid,
      marker,
      startedAt,
      child,
      stopping: false,
      exited,
      markExited,
      poll: undefined,
    };
    this.tracked.set(agentId, t);
    const onGone = (code: number | null, signal: string | null) => {
      if (t.poll) clearInterval(t.poll);
      if (this.tracked.get(agentId) === t) this.tracked.delete(agentId);
      // A runner's agent never outlives it: kill the group before the job is offered again.
      void this.killAgent(agentId).finally(() => {
        rmSync(this.runnerFile(agentId), { force: true });
        t.markExited();
        if (!t.stopping) {
          const reason = signal
            ? `killed by ${signal}`
            : `exited with code ${code}`;
          for (const l of this.listeners) l({ agentId, code, signal, reason });
        }
      });
    };
    if (child) {
      child.once('exit', (code, signal) => onGone(code, signal));
    } else {
      t.poll = setInterval(() => {
        if (!alive(pid)) onGone(null, null);
      }, 250);
      t.poll.unref();
    }
  }

  async stop(agentId: string, graceMs: number): Promise<void> {
    const t = this.tracked.get(agentId);
    if (!t) return;
    t.stopping = true;
    try {
      process.kill(t.pid, 'SIGTERM');
    } catch {
      /* gone */
    }
    const timer = setTimeout(() => {
      try {
        process.kill(t.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, graceMs);
    await t.exited;
    clearTimeout(timer);
  }

  async killAgent(
    agentId: string,
    match?: { jobId: string; attempt: number },
  ): Promise<boolean> {
    const rec = readAgentRecord(join(this.opts.runDir, agentId, 'agent.json'));
    if (match && (rec?.jobId !== match.jobId || rec.attempt !== match.attempt))
      return false;
    let killed = false;
    if (rec && isOurAgent(rec)) {
      try {
        process.kill(-rec.pid, 'SIGKILL');
        killed = true;
      } catch {
        /* gone */
      }
    }
    // What left the agent's process group (setsid, double forks): the slot's sweep.
    const slot = readContainmentRecord(join(this.opts.runDir, agentId));
    if (slot) {
      const report = await sweepSlot(slot, [slot.cgroup]);
      killed ||= report.killed.length > 0;
    }
    return killed;
  }

  pidOf(agentId: string): number | undefined {
    return this.tracked.get(agentId)?.pid;
  }

  async close(): Promise<void> {
    for (const t of this.tracked.values()) if (t.poll) clearInterval(t.poll);
  }
}
