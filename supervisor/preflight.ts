import {
  SHELL_BUILTINS,
  findProgram,
  programOf,
} from '../contract/agent-program.js';
import type { Context } from './context.js';
import { SupervisorError } from './errors.js';
import type { DockerEngine } from './runtimes/docker/engine.js';

/** How to install the programs of the presets. */
const INSTALL_HINTS: Record<string, string> = {
  claude: 'install Claude Code (npm install -g @anthropic-ai/claude-code)',
  codex: 'install the Codex CLI (npm install -g @openai/codex)',
  aider: 'install Aider (python -m pip install aider-install && aider-install)',
};

function missing(
  program: string,
  where: string,
  docker: boolean,
): SupervisorError {
  const install = INSTALL_HINTS[program] ?? `install ${program}`;
  return new SupervisorError(
    'ERR_SUP_AGENT_MISSING',
    `the agent program "${program}" is not installed ${where}`,
    {
      hint: docker
        ? `${install} in the runner image (a FROM agent-supervisor-runner Dockerfile, then --image / docker.image), or use --runtime process`
        : `${install} or put it on PATH for the supervisor, or pass --agent-command "<command>"`,
    },
  );
}

/** What runs the agents: the command, the runtime, the runner image, the repository. */
/** The program's name reaches the shell as "$1", never inside the script. */
const LOOKUP_PROGRAM = 'command -v "$1"';

export interface AgentTarget {
  agentCommand: string | undefined;
  runtime: string;
  image: string;
  root: string;
}

/** The target of this context's own configuration. */
export function agentTarget(ctx: Context): AgentTarget {
  return {
    agentCommand: ctx.config.agentCommandResolved,
    runtime: ctx.config.runtime,
    image: ctx.config.docker.image,
    root: ctx.paths.root,
  };
}

/**
 * `start` and `scale` refuse an agent command whose program is not where it will run: the host's
 * PATH for the process runtime, the runner image for Docker (`command -v` in a throw-away
 * container). Commands whose program a shell would have to work out (a variable, a subshell)
 * pass; a missing program found later (exit 127) pauses the slot instead (docs/agents.md).
 */
export async function preflightAgent(
  target: AgentTarget,
  opts: { engine?: DockerEngine; pathEnv?: string } = {},
): Promise<{ program: string | undefined; path: string | undefined }> {
  const command = target.agentCommand;
  const program = command ? programOf(command) : undefined;
  if (!program || SHELL_BUILTINS.has(program))
    return { program, path: undefined };
  const runtime = target.runtime;
  if (runtime === 'process') {
    const path = findProgram(
      program,
      opts.pathEnv ?? process.env.PATH,
      target.root,
    );
    if (!path)
      throw missing(program, 'on this machine (not found on PATH)', false);
    return { program, path };
  }
  if (runtime === 'docker' && opts.engine) {
    const image = target.image;
    const r = await opts.engine.probe(image, [
      '/bin/sh',
      '-c',
      LOOKUP_PROGRAM,
      'sh',
      program,
    ]);
    if (r.exitCode !== 0)
      throw missing(program, `in the runner image ${image}`, true);
    return { program, path: r.output.trim() || undefined };
  }
  // Swarm tasks run on other nodes: their image is checked by the runner (exit 127 pauses it).
  return { program, path: undefined };
}
