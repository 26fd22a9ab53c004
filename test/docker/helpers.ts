import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { resolveRepo } from '../../supervisor/repo.js';
import {
  repoNetworkName,
  runnerSelector,
} from '../../supervisor/runtimes/docker/labels.js';
import { ROOT, testEnv } from '../helpers/cli.js';
import { git, tempRepo } from '../helpers/repo.js';
import { describeNeeds } from '../helpers/requirements.js';

/** The runner image the Docker tests build and use (RUNNER_IMAGE, as test/docker/setup-engine.sh takes it). */
export const RUNNER_IMAGE =
  process.env.RUNNER_IMAGE ?? 'agent-supervisor-runner:latest';
export const docker = new Docker();

async function probeEngine(): Promise<string | undefined> {
  try {
    await Promise.race([
      docker.ping(),
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error('no answer within 5 s')), 5000),
      ),
    ]);
    return undefined;
  } catch (err) {
    return `no Docker engine answers (${(err as Error).message}); start one with test/docker/setup-engine.sh (as root)`;
  }
}

const noEngine = await probeEngine();

/**
 * A describe block that needs a Docker engine: it runs when one answers; without one it fails
 * in CI (CI=1: the Docker tests are required) and is skipped with a printed reason locally.
 */
export function describeDocker(name: string, fn: () => void): void {
  describeNeeds(noEngine, name, fn);
}

/** A hash of what the runner image is made of here (dist/ of the runner, the Dockerfile, the lock file). */
function sourcesHash(): string {
  const h = createHash('sha256');
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) =>
      a.name.localeCompare(b.name),
    )) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (!e.name.endsWith('.map') && !e.name.endsWith('.d.ts'))
        h.update(p).update(readFileSync(p));
    }
  };
  walk(join(ROOT, 'dist/agent-runner'));
  walk(join(ROOT, 'dist/contract'));
  h.update(readFileSync(join(ROOT, 'docker/Dockerfile'))).update(
    readFileSync(join(ROOT, 'package-lock.json')),
  );
  return h.digest('hex').slice(0, 16);
}

const HASH_LABEL = 'dev.agent-supervisor.sources-hash';

/** A first build copies node_modules into the image: minutes on a loaded 2-core machine. */
export const IMAGE_BUILD_TIMEOUT_MS = 900_000;

/**
 * The runner image contains dist/: rebuilds it when what it is made of changed since it was
 * built (as test/docker/setup-engine.sh does), one test file at a time (a lock directory).
 */
export async function ensureRunnerImage(): Promise<void> {
  const lock = `/tmp/${RUNNER_IMAGE.replace(/[^A-Za-z0-9.-]/g, '_')}-image.lock`;
  const deadline = Date.now() + IMAGE_BUILD_TIMEOUT_MS;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // A lock left by a killed run is stale once a build would have timed out.
      const st = statSync(lock, { throwIfNoEntry: false });
      if (st && Date.now() - st.mtimeMs > IMAGE_BUILD_TIMEOUT_MS)
        rmdirSync(lock);
      if (Date.now() > deadline)
        throw new Error(`${lock} is held for too long`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    const hash = sourcesHash();
    const label = await docker
      .getImage(RUNNER_IMAGE)
      .inspect()
      .then((i) => i.Config.Labels?.[HASH_LABEL])
      .catch(() => undefined);
    if (label === hash) return;
    const previous = await docker
      .getImage(RUNNER_IMAGE)
      .inspect()
      .then((i) => i.Id)
      .catch(() => undefined);
    const base =
      spawnSync('docker', ['image', 'inspect', 'local/node20:bookworm'], {
        stdio: 'ignore',
      }).status === 0
        ? ['--build-arg', 'BASE_IMAGE=local/node20:bookworm']
        : [];
    process.stderr.write(
      `[docker tests] building ${RUNNER_IMAGE} (its sources changed)\n`,
    );
    execFileSync(
      'docker',
      [
        'build',
        '-q',
        '-f',
        'docker/Dockerfile',
        ...base,
        '--label',
        `${HASH_LABEL}=${hash}`,
        '-t',
        RUNNER_IMAGE,
        '.',
      ],
      {
        cwd: ROOT,
        stdio: ['ignore', 'ignore', 'pipe'],
        timeout: IMAGE_BUILD_TIMEOUT_MS - 10_000,
      },
    );
    // The image it replaces would pile up untagged on every rebuild.
    if (previous)
      await docker
        .getImage(previous)
        .remove()
        .catch(() => undefined);
  } finally {
    rmdirSync(lock);
  }
}

/**
 * The scripted agent inside the container: test/fixtures/agent.mjs is committed into the test
 * repository (the host's fixture path does not exist in a container), with a dispatcher that
 * also knows a few Docker-only behaviours by issue title:
 *   "hog ..."     allocates memory until the kernel kills it
 *   "vandal ..."  tries to rewrite what is not its slot's and records what happened
 */
const AGENT_SH = `#!/bin/sh
case "$ISSUE_TITLE" in
  hog*)
    exec node -e 'const a = []; for (;;) a.push(Buffer.alloc(16 << 20, 1))' ;;
  vandal*)
    out="vandal-$ISSUE_ID.txt"
    common=$(git rev-parse --path-format=absolute --git-common-dir)
    attempt() { if "$@" >/dev/null 2>&1; then echo "allowed: $*"; else echo "refused: $*"; fi >> "$out"; }
    attempt git branch -f main HEAD
    attempt git update-ref refs/heads/main HEAD
    attempt git update-ref refs/heads/issue/1 HEAD
    attempt git update-ref -d refs/heads/issue/1
    attempt git pack-refs --all
    attempt sh -c "echo 0000000000000000000000000000000000000000 refs/heads/evil >> $common/packed-refs"
    attempt git tag evil
    attempt git config core.hooksPath /tmp
    other=agent-002; [ "$AGENT_ID" = agent-002 ] && other=agent-001
    # Its own private refs/heads/agent takes this; the host's agent/* must not change.
    git update-ref "refs/heads/agent/\${other#agent-}" HEAD >/dev/null 2>&1; echo "moved-other: $?" >> "$out"
    attempt test -e "$common/../.worktrees/$other/README.md"
    attempt test -e /var/run/docker.sock
    echo "uid $(id -u)" >> "$out"
    exit 0 ;;
  *)
    exec node agent.mjs ;;
esac
`;

export interface DockerRepo {
  dir: string;
  env: Record<string, string>;
  repoId: string;
  cleanup: () => Promise<void>;
}

/** A temp repository with the scripted agent committed, a fresh prefix, and the Docker runtime. */
export async function dockerRepo(
  opts: { config?: Record<string, unknown>; env?: Record<string, string> } = {},
): Promise<DockerRepo> {
  const repo = tempRepo({
    files: { 'README.md': '# test repo\n', 'agent.sh': AGENT_SH },
  });
  copyFileSync(
    join(ROOT, 'test/fixtures/agent.mjs'),
    join(repo.dir, 'agent.mjs'),
  );
  git(repo.dir, 'add', 'agent.mjs');
  git(repo.dir, 'commit', '-qm', 'scripted agent');
  const config = {
    runtime: 'docker',
    env: { enabled: false },
    ...opts.config,
    docker: {
      // In the file, not the environment: a test's own image (config.docker.image) must win.
      image: RUNNER_IMAGE,
      // The shared test Redis listens on the host's loopback only: the host network, chosen
      // explicitly (the repository's own network is the default).
      network: 'host',
      healthInterval: '1s',
      credentials: false,
      passEnv: [],
      ...(opts.config?.docker as object | undefined),
    },
  };
  writeFileSync(
    join(repo.dir, 'supervisor.config.json'),
    JSON.stringify(config, null, 2),
  );
  const env = testEnv({
    SUPERVISOR_AGENT_COMMAND: 'sh agent.sh',
    ...opts.env,
  });
  const { repoId } = await resolveRepo(repo.dir);
  return {
    dir: repo.dir,
    env,
    repoId,
    cleanup: async () => {
      await removeContainers(repoId);
      repo.cleanup();
    },
  };
}

/** The repository's runner containers (by label). */
export async function containers(
  repoId: string,
  opts: { running?: boolean } = {},
): Promise<Docker.ContainerInfo[]> {
  const filters: Record<string, string[]> = {
    label: Object.entries(runnerSelector(repoId)).map(([k, v]) => `${k}=${v}`),
  };
  if (opts.running) filters.status = ['running'];
  return docker.listContainers({ all: true, filters: JSON.stringify(filters) });
}

export async function removeContainers(repoId: string): Promise<void> {
  for (const c of await containers(repoId))
    await docker
      .getContainer(c.Id)
      .remove({ force: true })
      .catch(() => undefined);
  // The repository's own network (the default one) goes with them.
  await docker
    .getNetwork(repoNetworkName(repoId))
    .remove()
    .catch(() => undefined);
}
