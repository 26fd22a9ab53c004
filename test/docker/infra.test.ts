/**
 * Issue 13 item 1, `supervisor infra up` for real: the engine runs infra/docker-compose.yml with
 * the machine's Compose (the Docker CLI plugin, else Debian's docker-compose 1.x) from local
 * images (INFRA_POSTGRES_IMAGE=local/postgres:15 and the local redis:7, built by
 * test/docker/setup-engine.sh; no registry is reachable), on free host ports. Checked from the
 * host: the queue's Redis refuses every command without the generated password and accepts
 * them with it; the apps' Redis is another server that needs none; Postgres answers with trust
 * auth. `infra down --volumes` removes it all.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import { probePostgres } from '../../supervisor/env/postgres.js';
import { INFRA_PROJECT } from '../../supervisor/cli/infra.js';
import { runCli } from '../helpers/cli.js';
import { freePort } from '../helpers/redis-server.js';
import { tempDir } from '../helpers/repo.js';
import { describeNeeds } from '../helpers/requirements.js';

const POSTGRES_IMAGE = 'local/postgres:15';
const REDIS_IMAGE = 'redis:7';

const ok = (cmd: string, ...args: string[]) =>
  spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;

function missing(): string | undefined {
  if (!ok('docker', 'info')) return 'no Docker engine answers';
  if (!ok('docker', 'compose', 'version') && !ok('docker-compose', 'version'))
    return 'no Compose (`docker compose` or docker-compose): test/provision.sh installs one';
  for (const image of [POSTGRES_IMAGE, REDIS_IMAGE])
    if (!ok('docker', 'image', 'inspect', image))
      return `no local image ${image}: run test/docker/setup-engine.sh`;
  return undefined;
}

/** The infra project's containers on the engine (one instance per machine). */
function infraContainers(): string[] {
  const r = spawnSync(
    'docker',
    [
      'ps',
      '--all',
      '--filter',
      `label=com.docker.compose.project=${INFRA_PROJECT}`,
      '--format',
      '{{.Names}}',
    ],
    { encoding: 'utf8' },
  );
  return r.stdout.split('\n').filter(Boolean);
}

/**
 * The server's answer to `cmd`, or the error it replied with (ioredis opens with HELLO, which a
 * server that wants a password refuses before any command: that refusal is the answer then).
 */
async function ask(url: string, ...cmd: string[]): Promise<string> {
  const r = new Redis(url, {
    lazyConnect: true,
    enableReadyCheck: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  let refused: string | undefined;
  r.on('error', (err: Error) => (refused ??= err.message));
  try {
    await r.connect();
    return String(await r.call(cmd[0]!, ...cmd.slice(1)));
  } catch (err) {
    return refused ?? (err as Error).message;
  } finally {
    r.disconnect();
  }
}

let env: Record<string, string> | undefined;
let cwd = '';

describeNeeds(missing(), 'supervisor infra up on a real engine', () => {
  afterAll(async () => {
    if (!env) return;
    const down = await runCli(['infra', 'down', '--volumes'], {
      cwd,
      env,
      timeoutMs: 120_000,
    });
    expect(down.code, down.stderr).toBe(0);
    expect(infraContainers()).toEqual([]);
  }, 150_000);

  it('the queue Redis asks for the generated password, the apps Redis is another server, Postgres answers', async () => {
    // Another instance on this machine would be this one (a fixed project name): never touch it.
    expect(infraContainers(), 'an infra instance runs already').toEqual([]);
    cwd = tempDir('sup-infra-real-');
    const [pg, queue, apps] = [
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    env = {
      SUPERVISOR_INFRA_DIR: join(cwd, 'state'),
      INFRA_POSTGRES_IMAGE: POSTGRES_IMAGE,
      INFRA_REDIS_IMAGE: REDIS_IMAGE,
      INFRA_POSTGRES_PORT: String(pg),
      INFRA_REDIS_PORT: String(queue),
      INFRA_APPS_REDIS_PORT: String(apps),
    };
    const up = await runCli(['infra', 'up'], { cwd, env, timeoutMs: 300_000 });
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toMatch(/infrastructure up/);

    const pwFile = join(cwd, 'state', 'infra-redis-password');
    expect(statSync(pwFile).mode & 0o777).toBe(0o600);
    const password = readFileSync(pwFile, 'utf8').trim();
    expect(up.stdout + up.stderr).not.toContain(password);
    // What it tells to export names the ports it was started on.
    expect(up.stdout).toContain(
      `redis://:$(cat '${pwFile}')@127.0.0.1:${queue}"`,
    );
    expect(up.stdout).toContain(`postgres://postgres@127.0.0.1:${pg}/postgres`);
    expect(up.stdout).toContain(`"redis://127.0.0.1:${apps}"`);

    const queueUrl = `redis://127.0.0.1:${queue}`;
    const withPassword = `redis://:${password}@127.0.0.1:${queue}`;
    const appsUrl = `redis://127.0.0.1:${apps}`;
    // Without the password: refused, reads and writes alike.
    expect(await ask(queueUrl, 'PING')).toMatch(/NOAUTH/);
    expect(await ask(queueUrl, 'SET', 'forged', '1')).toMatch(/NOAUTH/);
    expect(await ask(`redis://:wrong@127.0.0.1:${queue}`, 'PING')).toMatch(
      /WRONGPASS|invalid password/,
    );
    // With it: accepted.
    expect(await ask(withPassword, 'SET', 'queue-only', 'x')).toBe('OK');
    expect(await ask(withPassword, 'GET', 'queue-only')).toBe('x');
    expect(await ask(withPassword, 'CONFIG', 'GET', 'maxmemory-policy')).toBe(
      'maxmemory-policy,noeviction',
    );
    // The apps' Redis: no password, and not the queue's server.
    expect(await ask(appsUrl, 'PING')).toBe('PONG');
    expect(await ask(appsUrl, 'GET', 'queue-only')).toBe('null');
    const runId = async (url: string) =>
      /run_id:(\w+)/.exec(await ask(url, 'INFO', 'server'))?.[1];
    const [queueRun, appsRun] = [
      await runId(withPassword),
      await runId(appsUrl),
    ];
    expect(queueRun).toMatch(/^\w{40}$/);
    expect(appsRun).toMatch(/^\w{40}$/);
    expect(appsRun).not.toBe(queueRun);

    const pgProbe = await probePostgres(
      `postgres://postgres@127.0.0.1:${pg}/postgres`,
    );
    expect(pgProbe, pgProbe.error).toMatchObject({
      reachable: true,
      canCreateDb: true,
    });
  }, 330_000);
});
