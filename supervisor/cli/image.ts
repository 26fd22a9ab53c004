import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
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
  caFile?: string;
  npmRegistry?: string;
  json?: boolean;
}

const DEFAULT_NPM_REGISTRY = 'https://registry.npmjs.org/';

/** The system's own trust stores: the image has its own, so a cafile naming one adds nothing. */
const SYSTEM_BUNDLES = new Set([
  '/etc/ssl/certs/ca-certificates.crt',
  '/etc/pki/tls/certs/ca-bundle.crt',
  '/etc/ssl/cert.pem',
  '/etc/ssl/ca-bundle.pem',
]);

/** A build argument is one argv string: Linux caps those at 128 KiB. */
const MAX_CA_BYTES = 120 * 1024;

/** A setting of the host's npm configuration (`npm config get`), or undefined when unset. */
function hostNpmConfig(key: string): string | undefined {
  try {
    const v = execFileSync('npm', ['config', 'get', key], {
      encoding: 'utf8',
      timeout: 15_000,
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    return v && v !== 'null' && v !== 'undefined' ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The CA bundle and npm registry the build uses: the flags, else the host's npm configuration
 * (`cafile`, `registry` when it is not the public one).
 */
export function npmBuildSettings(o: {
  caFile?: string;
  npmRegistry?: string;
}): { caFile?: string; caPem?: string; registry?: string } {
  const hostCa = hostNpmConfig('cafile');
  const caFile =
    o.caFile ?? (hostCa && !SYSTEM_BUNDLES.has(hostCa) ? hostCa : undefined);
  const hostRegistry = hostNpmConfig('registry');
  const registry =
    o.npmRegistry ??
    (hostRegistry && hostRegistry !== DEFAULT_NPM_REGISTRY
      ? hostRegistry
      : undefined);
  if (registry !== undefined && !/^https?:\/\/[^\s]+$/.test(registry))
    throw new SupervisorError(
      'ERR_SUP_USAGE',
      `--npm-registry must be an http(s) URL, got "${registry}"`,
    );
  let caPem: string | undefined;
  if (caFile !== undefined) {
    try {
      caPem = readFileSync(caFile, 'utf8');
    } catch (err) {
      throw new SupervisorError(
        'ERR_SUP_USAGE',
        `cannot read the CA bundle ${caFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        {
          hint:
            o.caFile === undefined
              ? 'it comes from your npm configuration (`npm config get cafile`): fix it there, or pass --ca-file'
              : 'pass a PEM file: --ca-file /path/to/ca.pem',
        },
      );
    }
    if (!caPem.includes('-----BEGIN CERTIFICATE-----'))
      throw new SupervisorError(
        'ERR_SUP_USAGE',
        `${caFile} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`,
      );
    if (Buffer.byteLength(caPem) > MAX_CA_BYTES)
      throw new SupervisorError(
        'ERR_SUP_USAGE',
        `${caFile} is ${Math.round(Buffer.byteLength(caPem) / 1024)} KiB: a CA bundle reaches the build as one argument, at most ${MAX_CA_BYTES / 1024} KiB`,
        {
          hint: 'pass a file with only the extra certificates (your proxy or registry CA): the image has the public ones',
        },
      );
  }
  return {
    ...(caFile !== undefined ? { caFile } : {}),
    ...(caPem !== undefined ? { caPem } : {}),
    ...(registry !== undefined ? { registry } : {}),
  };
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
    .option(
      '--ca-file <pem>',
      "CA bundle npm and Node trust in the build and the agents at run time, for a TLS-intercepting proxy or a private registry (default: npm's cafile setting)",
    )
    .option(
      '--npm-registry <url>',
      "npm registry of the build (default: npm's registry setting when it is not the public one)",
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
      const npm = npmBuildSettings(o);
      if (npm.caPem) args.push('--build-arg', `NPM_CA_PEM=${npm.caPem}`);
      if (npm.registry)
        args.push('--build-arg', `NPM_REGISTRY=${npm.registry}`);
      // A failed step leaves no container behind (the legacy builder keeps it otherwise).
      args.push('--force-rm', root);
      progress(
        `docker ${args.map((a) => (a.startsWith('NPM_CA_PEM=') ? `NPM_CA_PEM=<${npm.caFile}>` : a)).join(' ')}`,
      );
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
