import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { loadConfig } from '../config.js';
import { SupervisorError } from '../errors.js';
import { printJson, progress, say, type GlobalOpts } from './output.js';

/** The root of this installation of agent-supervisor (the runner image's build context). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (
      existsSync(join(dir, 'docker', 'Dockerfile')) &&
      existsSync(join(dir, 'package.json'))
    )
      return dir;
    dir = dirname(dir);
  }
  throw new SupervisorError(
    'ERR_SUP_DOCKER',
    'docker/Dockerfile is missing from this installation of agent-supervisor',
    {
      hint: 'build from a checkout: git clone …, npm ci, npm run build, npm run image',
    },
  );
}

interface BuildOpts {
  tag?: string;
  baseImage?: string;
  agentPackages?: string;
  deps?: string;
  json?: boolean;
}

/** `docker build` of the runner image with the package as its context; output streams to stderr. */
function build(args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.env.SUPERVISOR_DOCKER || 'docker', args, {
      stdio: ['ignore', 2, 2],
    });
    child.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'ENOENT'
          ? new SupervisorError(
              'ERR_SUP_DOCKER',
              'the docker command is not installed',
              {
                hint: 'install Docker (Linux: apt-get install docker.io; macOS: Docker Desktop), or run without containers: --runtime process',
              },
            )
          : err,
      ),
    );
    child.once('close', (code) => resolve(code ?? 1));
  });
}

export function registerImageCommand(
  program: Command,
  globals: () => GlobalOpts,
): void {
  const image = program
    .command('image')
    .description('the agent-runner image of the Docker runtime');
  image
    .command('build')
    .description(
      'build the runner image from docker/Dockerfile (needs the docker CLI)',
    )
    .option(
      '--tag <image>',
      'image name (default: docker.image from the configuration, agent-supervisor-runner:latest)',
    )
    .option(
      '--base-image <image>',
      'base image with Node 20 (default node:20-bookworm-slim)',
    )
    .option(
      '--agent-packages <pkgs>',
      'npm packages of agent CLIs to bake in, e.g. "@anthropic-ai/claude-code @openai/codex"',
    )
    .option(
      '--deps <where>',
      'context (copy this node_modules, Linux only) | registry (npm ci inside the image; macOS)',
    )
    .option('--json', 'print JSON')
    .action(async (o: BuildOpts) => {
      const root = packageRoot();
      if (
        !existsSync(join(root, 'dist', 'agent-runner', 'main.js')) ||
        !existsSync(join(root, 'node_modules'))
      ) {
        throw new SupervisorError(
          'ERR_SUP_DOCKER',
          `${root} has no dist/ or node_modules/ to put in the image`,
          { hint: 'run `npm ci && npm run build` there first' },
        );
      }
      let tag = o.tag;
      if (!tag) {
        let file: string | undefined;
        try {
          const { resolveRepo } = await import('../repo.js');
          file = (await resolveRepo(globals().repo ?? process.cwd()))
            .configFile;
        } catch {
          file = undefined;
        }
        tag = loadConfig(file ? { configFile: file } : {}).docker.image;
      }
      const deps =
        o.deps ?? (process.platform === 'linux' ? 'context' : 'registry');
      if (deps !== 'context' && deps !== 'registry')
        throw new SupervisorError(
          'ERR_SUP_USAGE',
          `--deps must be context or registry, got "${deps}"`,
        );
      const args = [
        'build',
        '-f',
        join(root, 'docker', 'Dockerfile'),
        '-t',
        tag,
        '--build-arg',
        `DEPS=${deps}`,
      ];
      if (o.baseImage) args.push('--build-arg', `BASE_IMAGE=${o.baseImage}`);
      if (o.agentPackages)
        args.push('--build-arg', `AGENT_PACKAGES=${o.agentPackages}`);
      args.push(root);
      progress(`docker ${args.join(' ')}`);
      const code = await build(args);
      if (code !== 0)
        throw new SupervisorError(
          'ERR_SUP_DOCKER',
          `docker build exited with code ${code}`,
          {
            hint: 'see its output above; docs/docker.md lists the build arguments',
          },
        );
      if (o.json) printJson({ image: tag, built: true });
      else say(`built ${tag}`);
    });
}

export function registerComposeConfigCommand(
  program: Command,
  globals: () => GlobalOpts,
): void {
  program
    .command('compose-config')
    .description(
      'print the variables docker/docker-compose.yml needs (eval "$(supervisor compose-config --agents 3)")',
    )
    .option('--agents <n>', 'slots to prepare', '3')
    .option(
      '--redis-url <url>',
      'Redis as the containers reach it',
      'redis://redis:6379',
    )
    .option('--json', 'print JSON')
    .action(async (o: { agents: string; redisUrl: string; json?: boolean }) => {
      if (
        !/^\d+$/.test(o.agents) ||
        Number(o.agents) < 1 ||
        Number(o.agents) > 999
      )
        throw new SupervisorError(
          'ERR_SUP_USAGE',
          `--agents must be a whole number from 1 to 999, got "${o.agents}"`,
        );
      const { openContext } = await import('../context.js');
      const { composeVariables, shellExports } =
        await import('../runtimes/docker/compose.js');
      const ctx = await openContext({ repo: globals().repo, init: true });
      try {
        const vars = await composeVariables(ctx, Number(o.agents), o.redisUrl);
        if (o.json) printJson(vars);
        else say(shellExports(vars));
      } finally {
        ctx.close();
      }
    });
}
