import { spawn } from 'node:child_process';
import { coerceError } from '../contract/errors.js';
import type { RunnerConfig } from '../contract/job.js';
import {
  describeSync,
  cleanKeepPatterns,
  planIncludedFiles,
  resyncWorktree,
  type IncludedFile,
} from '../contract/worktreeinclude.js';
import type { LineStamper } from './line-stamper.js';

/**
 * Runs the configured before-job steps in order (argv, no shell), their output into the job's
 * log. Returns why the first failing step failed, or undefined when all succeeded.
 */
export async function runBeforeJob(
  steps: RunnerConfig['beforeJob'],
  opts: {
    cwd: string;
    env: Record<string, string>;
    log: Pick<LineStamper, 'write'>;
  },
): Promise<string | undefined> {
  for (const step of steps) {
    opts.log.write(`--- before job: ${step.name}\n`);
    const why = await runStep(step, opts);
    if (why) return `before-job step "${step.name}" failed: ${why}`;
  }
  return undefined;
}

const RESYNC_STEP = 'sync .worktreeinclude';

/**
 * The first before-job step when the runner shares the host with the main worktree (`includeRoot`):
 * the ignored files `.worktreeinclude` lists re-synced from it, every other ignored file the last
 * agent left removed. Run here rather than as a node child: starting one cost 100–200 ms per job
 * on a loaded machine (docs/benchmarks.md, dispatch). Returns why it failed, like a step.
 */
export async function resyncIncluded(
  root: string,
  worktree: string,
  log: Pick<LineStamper, 'write'>,
  /** What the reset did already: the plan it kept, or why there is none (`IncludedPlan`). */
  prepared?: IncludedPlan,
): Promise<string | undefined> {
  log.write(`--- before job: ${RESYNC_STEP}\n`);
  try {
    if (prepared?.error) throw prepared.error;
    const summary = await resyncWorktree(root, worktree, {
      ...(prepared?.plan ? { plan: prepared.plan } : {}),
      strayRemoved: prepared?.keep !== undefined,
    });
    log.write(`.worktreeinclude: ${describeSync(summary)}\n`);
    return undefined;
  } catch (err) {
    const why = coerceError(err).message;
    log.write(`${why}\n`);
    return `before-job step "${RESYNC_STEP}" failed: ${why}`;
  }
}

/**
 * The `.worktreeinclude` plan, made before the reset so that its `git clean` keeps the listed
 * files and removes every other ignored one (`keep`, when the plan can be patterns). A plan that
 * fails is reported by the re-sync step, after the claim, as before.
 */
export interface IncludedPlan {
  plan?: readonly IncludedFile[];
  keep?: string[];
  error?: Error;
}

export async function planIncluded(root: string): Promise<IncludedPlan> {
  try {
    const plan = await planIncludedFiles(root);
    const keep = cleanKeepPatterns(plan);
    return keep ? { plan, keep } : { plan };
  } catch (err) {
    return { error: coerceError(err) };
  }
}

function runStep(
  step: RunnerConfig['beforeJob'][number],
  opts: {
    cwd: string;
    env: Record<string, string>;
    log: Pick<LineStamper, 'write'>;
  },
): Promise<string | undefined> {
  return new Promise((resolve) => {
    let tail = '';
    const keep = (d: Buffer) => {
      opts.log.write(d);
      tail = (tail + d.toString()).slice(-2000);
    };
    const [cmd, ...args] = step.command;
    const child = spawn(cmd!, args, {
      cwd: opts.cwd,
      env: { ...opts.env, ...step.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => child.kill('SIGKILL'), step.timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve(err.message);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(undefined);
      else
        resolve(
          `${signal ? `killed by ${signal}${signal === 'SIGKILL' ? ` (timeout ${step.timeoutMs} ms?)` : ''}` : `exit ${code}`}${tail.trim() ? `: ${tail.trim().split('\n').slice(-3).join(' | ')}` : ''}`,
        );
    });
  });
}
