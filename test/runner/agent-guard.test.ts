/**
 * An agent never outlives its runner, even with nobody else watching (no supervisor to sweep
 * the slot): a runner process running an agent — which leaves a background child in its
 * process group — is killed with SIGKILL, and the runner's guard kills the agent's group.
 * Runs the built runner code (dist/) in a process of its own.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { fork } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { processAlive } from '../helpers/agents.js';
import { waitFor } from '../helpers/cli.js';
import { tempDir } from '../helpers/repo.js';

const DIST = resolve('dist/agent-runner');

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** A stand-in runner: one AgentProcess with the runner's guard, then it waits to be killed. */
const RUNNER = `
import { PassThrough } from 'node:stream';
const dist = process.env.GUARD_TEST_DIST;
const { AgentProcess } = await import(dist + '/agent-process.js');
const { AgentGuard } = await import(dist + '/agent-guard.js');
const { LineStamper } = await import(dist + '/line-stamper.js');
new AgentProcess({
  command: 'cat /proc/self/oom_score_adj > "$PIDS.oom"; sleep 300 & echo "$$ $!" > "$PIDS.tmp" && mv "$PIDS.tmp" "$PIDS"; wait',
  cwd: process.env.GUARD_TEST_DIR,
  env: { PATH: process.env.PATH, PIDS: process.env.GUARD_TEST_PIDS },
  log: new LineStamper(new PassThrough()),
  progressTimeoutMs: 600000,
  killGraceMs: 1000,
  guard: new AgentGuard(),
});
setInterval(() => undefined, 1000);
`;

describe('the runner guard', () => {
  it('kill -9 of the runner: its agent and the agent’s background child die with it; they are the first the kernel kills for memory', async () => {
    expect(existsSync(join(DIST, 'agent-guard.js'))).toBe(true);
    const dir = tempDir('sup-guard-');
    const script = join(dir, 'runner.mjs');
    const pidsFile = join(dir, 'pids');
    writeFileSync(script, RUNNER);
    const runner = fork(script, [], {
      env: {
        ...process.env,
        GUARD_TEST_DIST: pathToFileURL(DIST).href,
        GUARD_TEST_DIR: dir,
        GUARD_TEST_PIDS: pidsFile,
      },
      stdio: 'ignore',
    });
    let pids: number[] = [];
    cleanups.push(() => {
      for (const p of [runner.pid!, ...pids])
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          /* gone */
        }
    });
    await waitFor(() => existsSync(pidsFile), {
      timeoutMs: 30_000,
      what: 'the agent started',
    });
    pids = readFileSync(pidsFile, 'utf8').trim().split(' ').map(Number);
    expect(pids).toHaveLength(2);
    for (const p of pids) expect(processAlive(p)).toBe(true);
    // The agent and its children are what the kernel kills first when memory runs out.
    expect(readFileSync(`${pidsFile}.oom`, 'utf8').trim()).toBe('1000');
    for (const p of pids)
      expect(readFileSync(`/proc/${p}/oom_score_adj`, 'utf8').trim()).toBe(
        '1000',
      );
    runner.kill('SIGKILL');
    await waitFor(() => pids.every((p) => !processAlive(p)), {
      timeoutMs: 10_000,
      what: 'the agent and its child killed by the guard',
    });
  }, 60_000);
});
