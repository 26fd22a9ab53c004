import type { Config } from './config.js';
import { SupervisorError, redactSecrets } from './errors.js';
import { ping } from './redis.js';

/**
 * Whether the Redis server at `url` answers a client that brings no credentials. Asked with the
 * URL's host, port and TLS settings only: a password in the URL says nothing about whether the
 * server needs one.
 */
export function answersWithoutPassword(url: string): Promise<boolean> {
  const u = new URL(url);
  u.username = '';
  u.password = '';
  return ping(u.toString(), 3000);
}

/** Where runners run when the supervisor can tell: in containers or on other hosts. */
export function runnersOffHost(config: Config): string | undefined {
  if (config.runtime === 'docker') return 'runners run in Docker containers';
  if (config.runtime === 'swarm') return 'runners run as Swarm tasks';
  if (config.git.runners === 'remote') return 'runners run on other hosts';
  return undefined;
}

/**
 * The queue's Redis must require authentication when runners run in containers or on other
 * hosts: an agent there reaches its port (it shares the runner's network), and whoever can
 * write the queue can complete any job with a forged result. Refused unless the configuration
 * says so explicitly (`allowUnauthenticatedRedis`).
 */
export async function requireQueueAuthentication(
  config: Config,
  url: string,
): Promise<void> {
  const where = runnersOffHost(config);
  if (!where || config.allowUnauthenticatedRedis) return;
  if (!(await answersWithoutPassword(url))) return;
  throw new SupervisorError(
    'ERR_SUP_CONFIG',
    `the queue's Redis at ${redactSecrets(url)} answers without a password, and ${where}: every agent can reach it and forge results`,
    {
      hint:
        '`supervisor infra up` starts a Redis with a generated password (it prints the REDIS_URL to use); ' +
        'or set requirepass (or an ACL user) on yours and put the password in REDIS_URL (redis://:PASSWORD@host:6379). ' +
        'To accept this Redis anyway (trusted agents only): "allowUnauthenticatedRedis": true in supervisor.config.json, or SUPERVISOR_ALLOW_UNAUTHENTICATED_REDIS=1',
    },
  );
}
