import { spawn } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export interface CheckResult {
  passed: boolean;
  exitCode: number | null;
  timedOut: boolean;
  /** The last lines of its output (what LAND_CHECK_LOG and the issue show). */
  tail: string;
  durationMs: number;
}

const TAIL_BYTES = 16 * 1024;
/** The shell script is constant; the user's command reaches it as data, in the environment. */
const RUN_CHECK = 'eval "$SUPERVISOR_LAND_CHECK"';

/**
 * The check runs the code an agent wrote (its tests, its package scripts): like the agent, it
 * gets the supervisor's environment minus the control plane's settings and credentials (the
 * queue's REDIS_URL, the admin POSTGRES_URL, SUPERVISOR_*, GIT_*); the landing slot's own
 * REDIS_URL / DATABASE_URL come from its environment slot.
 */
function checkBaseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (
      v === undefined ||
      k.startsWith('GIT_') ||
      k.startsWith('SUPERVISOR_') ||
      k === 'REDIS_URL' ||
      k === 'POSTGRES_URL'
    )
      continue;
    env[k] = v;
  }
  return env;
}

/**
 * Runs `land.check` in the landing worktree, in its own process group (a timeout kills the whole
 * group), with the landing slot's environment. The command is the user's configuration, never
 * issue text; the id and commits reach it as environment variables.
 */
export function runCheck(o: {
  command: string;
  cwd: string;
  env: Record<string, string>;
  timeoutMs: number;
  logFile: string;
}): Promise<CheckResult> {
  mkdirSync(dirname(o.logFile), { recursive: true });
  const log = createWriteStream(o.logFile);
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', RUN_CHECK], {
      cwd: o.cwd,
      env: { ...checkBaseEnv(), ...o.env, SUPERVISOR_LAND_CHECK: o.command },
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
    }, o.timeoutMs);
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
      done(null);
    });
    child.on('close', (code) => done(code));
  });
}
