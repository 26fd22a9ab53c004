import { spawn, type ChildProcess } from 'node:child_process';
import type { Writable } from 'node:stream';

/**
 * The guard: one small shell per runner, started once, that kills the running agent's process
 * group when the runner dies for any reason (kill -9 included). It reads lines from a pipe only
 * the runner (and, for one line, the agent's wrapper) holds: the wrapper writes its pid — the
 * agent's process group — before it runs anything of the agent's, the runner writes `-` when the
 * agent has exited. End-of-file (the kernel closes the runner's end when it dies) makes the
 * guard kill the last group it was given. It replaces a guard shell started with every agent
 * (two more processes per job, see docs/benchmarks.md "Throughput").
 */
const GUARD_SCRIPT = [
  'group=',
  'while IFS= read -r line; do group=$line; done',
  'case $group in',
  '  ""|*[!0-9]*) ;;',
  '  *) kill -s KILL -- "-$group" 2>/dev/null ;;',
  'esac',
].join('\n');

export class AgentGuard {
  private child: ChildProcess | undefined;

  /** The pipe to pass to the agent's wrapper as fd 3 (started or restarted here if needed). */
  pipe(): Writable {
    let child = this.child;
    if (
      !child?.stdin ||
      child.exitCode !== null ||
      child.signalCode !== null ||
      child.stdin.destroyed
    ) {
      // Its own process group: a kill of the runner's group does not take the guard with it.
      child = spawn('/bin/sh', ['-c', GUARD_SCRIPT], {
        detached: true,
        stdio: ['pipe', 'ignore', 'ignore'],
      });
      child.stdin!.on('error', () => undefined);
      // Neither keeps the runner's event loop alive.
      child.unref();
      (child.stdin as Writable & { unref?: () => void }).unref?.();
      this.child = child;
    }
    return child.stdin!;
  }

  /** The agent has exited: nothing to kill if the runner dies now. */
  disarm(): void {
    const stdin = this.child?.stdin;
    if (stdin && !stdin.destroyed) stdin.write('-\n');
  }
}
