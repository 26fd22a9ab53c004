import { spawn } from 'node:child_process';
import type { RunnerConfig } from '../contract/job.js';
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
