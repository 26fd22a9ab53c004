#!/usr/bin/env node
/**
 * Entry point of an agent-runner process. Its configuration comes as JSON in
 * SUPERVISOR_RUNNER_CONFIG (validated by the job contract's schema).
 */
import { openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { EXIT_SLOT_BROKEN } from '../contract/errors.js';
import { RunnerConfigSchema } from '../contract/job.js';
import { runGitAs, useSpawnHelper } from '../git/runner.js';
import { readRunnerConfigInput } from './remote-config.js';
import { AgentRunner } from './runner.js';

function log(msg: string, fields: Record<string, unknown> = {}): void {
  process.stderr.write(
    `${new Date().toISOString()} [runner] ${msg}${Object.keys(fields).length ? ' ' + JSON.stringify(fields) : ''}\n`,
  );
}

/**
 * Copies everything the runner prints into a file as well (SUPERVISOR_RUNNER_LOG_FILE): in a
 * container, stdout goes to Docker's log and this file is the one `supervisor logs` reads.
 */
function teeOutput(file: string): void {
  const fd = openSync(file, 'a');
  for (const stream of [process.stdout, process.stderr]) {
    const write = stream.write.bind(stream) as (...args: unknown[]) => boolean;
    stream.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      try {
        if (typeof chunk === 'string') writeSync(fd, chunk);
        else writeSync(fd, chunk);
      } catch {
        // A full disk must not stop the runner.
      }
      return write(chunk, ...rest);
    }) as typeof stream.write;
  }
}

/**
 * The runner's output goes to a log file. When the disk is full, writes to it fail with an
 * 'error' event on stdout/stderr, which would otherwise end the runner (and, restarted, end it
 * again: a crash loop holding the job). The job's own result records the failure instead.
 */
function survivePrintErrors(): void {
  for (const stream of [process.stdout, process.stderr])
    stream.on('error', () => undefined);
}

async function main(): Promise<void> {
  survivePrintErrors();
  if (process.env.SUPERVISOR_RUNNER_LOG_FILE)
    teeOutput(process.env.SUPERVISOR_RUNNER_LOG_FILE);
  // Runners started outside the supervisor (Swarm, Kubernetes, another host) derive their slot id and paths.
  let input: Record<string, unknown>;
  try {
    input = readRunnerConfigInput();
  } catch (err) {
    log((err as Error).message);
    process.exit(2);
  }
  const parsed = RunnerConfigSchema.safeParse(input);
  if (!parsed.success) {
    log(
      `invalid runner configuration: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
    process.exit(2);
  }
  const cfg = parsed.data;
  if (cfg.agentUser) {
    // The agent gets a uid of its own only from a root runner (which may switch uids); run it
    // as this one instead would hand it the runner's configuration, so refuse.
    if (process.getuid?.() !== 0) {
      log(
        `agentUser ${cfg.agentUser.uid}:${cfg.agentUser.gid} needs a runner running as root (with CAP_SETUID and CAP_SETGID); this one runs as uid ${process.getuid?.()}`,
      );
      process.exit(2);
    }
    runGitAs(cfg.agentUser);
  }
  // Read once: nothing the runner starts inherits its configuration.
  delete process.env.SUPERVISOR_RUNNER_CONFIG;
  const runner = new AgentRunner(cfg, (m, f) =>
    log(m, { agentId: cfg.agentId, ...f }),
  );
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals += 1;
    if (signals > 1) {
      log(`second ${sig}: stopping now`, { agentId: cfg.agentId });
      runner.forceKill();
      process.exit(1);
    }
    log(`${sig}: handing back the current job and stopping`, {
      agentId: cfg.agentId,
    });
    const timer = setTimeout(() => {
      runner.forceKill();
      process.exit(1);
    }, cfg.lease.killGraceMs + 15_000);
    timer.unref();
    runner.shutdown().then(
      () => process.exit(0),
      (err: Error) => {
        log(`shutdown failed: ${err.message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // Started by `supervisor runner` (SUPERVISOR_RUNNER_PARENT=its pid): when that CLI dies, even
  // by SIGKILL, this runner stops too, as if it had been sent SIGTERM, instead of working on
  // as an orphan nobody can stop with the command that started it.
  const parent = Number(process.env.SUPERVISOR_RUNNER_PARENT);
  delete process.env.SUPERVISOR_RUNNER_PARENT;
  if (parent > 1)
    setInterval(() => {
      if (process.ppid !== parent && signals === 0) {
        log('the supervisor runner command that started this runner is gone');
        onSignal('SIGTERM');
      }
    }, 1000).unref();
  // A broken slot (its job already handed back): the supervisor re-creates or quarantines it.
  void runner.broken.then(async (err) => {
    log(
      `slot broken, exiting for the supervisor to repair it: ${err.message}`,
      {
        agentId: cfg.agentId,
      },
    );
    await runner.shutdown().catch(() => undefined);
    process.exit(EXIT_SLOT_BROKEN);
  });
  // git is started by a small shell of the runner's rather than forked from the runner itself
  // (~2 ms of CPU per call less); not when git runs as the agent's user (runGitAs). After the
  // environment lost the runner's own variables: the shell's is what git gets.
  if (!cfg.agentUser) useSpawnHelper(join(cfg.runDir, 'git-helper'));
  await runner.start();
}

main().catch((err: Error) => {
  log(`fatal: ${err.message}`);
  process.exit(1);
});
