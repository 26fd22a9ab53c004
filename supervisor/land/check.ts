import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  ENTER_CGROUP_SH,
  SlotRun,
  slotPorts,
} from '../../contract/agent-containment.js';
import { withoutControlPlane } from '../../git/control-plane-env.js';

export interface CheckResult {
  passed: boolean;
  exitCode: number | null;
  timedOut: boolean;
  /** The last lines of its output (what LAND_CHECK_LOG and the issue show). */
  tail: string;
  durationMs: number;
}

const TAIL_BYTES = 16 * 1024;
/**
 * The shell script is constant; the user's command reaches it as data, in the environment. It
 * enters the landing slot's cgroup first, as an agent's wrapper does.
 */
const RUN_CHECK = [
  ...ENTER_CGROUP_SH,
  'cmd=$SUPERVISOR_LAND_CHECK',
  'unset SUPERVISOR_LAND_CHECK',
  'eval "$cmd"',
].join('\n');

/**
 * The same, first hiding the supervisor's state directory ($SUPERVISOR_HIDE_DIR: SQLite, logs,
 * the dashboard token) under an empty tmpfs, in a mount namespace of the check's own.
 */
const HIDE_STATE_AND_RUN_CHECK = [
  'mount -t tmpfs -o size=4k,mode=0700 agent-supervisor-hidden "$SUPERVISOR_HIDE_DIR" || { echo "supervisor: cannot hide $SUPERVISOR_HIDE_DIR" >&2; exit 125; }',
  'unset SUPERVISOR_HIDE_DIR',
  RUN_CHECK,
].join('\n');

let hideable: boolean | undefined;

/**
 * Where the check can get a mount namespace of its own: Linux, as root, with unshare, and
 * allowed to (a container without CAP_SYS_ADMIN is not). Asked once.
 */
function canHideState(): boolean {
  hideable ??=
    process.platform === 'linux' &&
    process.getuid?.() === 0 &&
    existsSync('/usr/bin/unshare') &&
    spawnSync('/usr/bin/unshare', ['--mount', 'true'], {
      stdio: 'ignore',
      timeout: 10_000,
    }).status === 0;
  return hideable;
}

/**
 * Runs `land.check` in the landing worktree, in its own process group (a timeout kills the whole
 * group), with the landing slot's environment. The command is the user's configuration, never
 * issue text; the id and commits reach it as environment variables. It runs the code an
 * agent wrote (its tests, its package scripts), so like the agent it gets no control-plane
 * variables (git/control-plane-env.ts); the landing slot's own REDIS_URL / DATABASE_URL
 * come from `env`. And like an agent's, nothing it starts outlives it: it runs in the landing
 * slot's cgroup (or carries its marker), and what it leaves running — `setsid` and
 * double-forked processes, listeners on the slot's ports — is killed when it ends
 * (contract/agent-containment.ts), as is whatever a check killed with the supervisor left.
 */
export async function runCheck(o: {
  command: string;
  cwd: string;
  env: Record<string, string>;
  timeoutMs: number;
  logFile: string;
  /** The landing slot (queue and `land`): its cgroup and marker. */
  slotKey: string;
  /** The supervisor's state directory, hidden from the check where that is possible. */
  hide?: string;
}): Promise<CheckResult> {
  mkdirSync(dirname(o.logFile), { recursive: true });
  const run = new SlotRun({
    slotKey: o.slotKey,
    worktreePath: o.cwd,
    ports: slotPorts(o.env),
  });
  await run.sweep();
  const log = createWriteStream(o.logFile);
  const started = Date.now();
  return new Promise((resolve) => {
    const hide = o.hide && canHideState() ? o.hide : undefined;
    // unshare execs the shell in place: the same pid, so the same process group to kill.
    const [file, args] = hide
      ? [
          '/usr/bin/unshare',
          [
            '--mount',
            '--propagation',
            'private',
            '/bin/sh',
            '-c',
            HIDE_STATE_AND_RUN_CHECK,
          ],
        ]
      : ['/bin/sh', ['-c', RUN_CHECK]];
    const child = spawn(file, args, {
      cwd: o.cwd,
      env: {
        ...withoutControlPlane(),
        ...o.env,
        ...run.env(),
        SUPERVISOR_LAND_CHECK: o.command,
        ...(hide ? { SUPERVISOR_HIDE_DIR: hide } : {}),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let tail = '';
    const take = (d: Buffer) => {
      log.write(d);
      tail = (tail + d.toString('utf8')).slice(-TAIL_BYTES);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
      void endRun();
    }, o.timeoutMs);
    // What it started in the background holds its output pipes open: ending them is what lets
    // 'close' come. The result waits for the sweep: nothing of the check survives it.
    let ended: Promise<unknown> | undefined;
    const endRun = () => (ended ??= run.end());
    child.on('exit', () => void endRun());
    const done = (code: number | null) => {
      clearTimeout(timer);
      if (timedOut) tail += `\n(land.check timed out after ${o.timeoutMs} ms)`;
      log.end();
      resolve({
        passed: code === 0 && !timedOut,
        exitCode: code,
        timedOut,
        tail: tail.split('\n').slice(-60).join('\n'),
        durationMs: Date.now() - started,
      });
    };
    child.on('error', (err) => {
      tail += `\n${err.message}`;
      void endRun().then(() => done(null));
    });
    child.on('close', (code) => void endRun().then(() => done(code)));
  });
}
