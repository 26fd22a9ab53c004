import { dockerClient } from '../runtimes/docker/client.js';
import { SwarmRuntime } from '../runtimes/swarm.js';
import { forTerminal } from './terminal.js';

/** `supervisor logs` for `--runtime swarm`: the service's logs, `agent-00N | …` by task slot. */
export async function swarmLogs(
  repoId: string,
  repoPath: string,
  o: { agentId: string | undefined; follow: boolean; tail: number },
): Promise<void> {
  const runtime = new SwarmRuntime(dockerClient({ timeout: 0 }), {
    repoId,
    repoPath,
    log: () => undefined,
    template: () => Promise.reject(new Error('read-only use')),
  });
  const abort = new AbortController();
  const stop = () => abort.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    await runtime.logs(
      {
        agentId: o.agentId,
        follow: o.follow,
        tail: o.tail,
        signal: abort.signal,
      },
      (id, line) => {
        process.stdout.write(
          `${o.agentId ? '' : `${id} | `}${forTerminal(line)}\n`,
        );
      },
    );
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
