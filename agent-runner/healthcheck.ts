#!/usr/bin/env node
/**
 * The runner image's HEALTHCHECK: exits 0 when this container's runner has a fresh heartbeat
 * in Redis, 1 when Redis does not answer or the heartbeat is stale or another runner's.
 * Reads the same SUPERVISOR_RUNNER_CONFIG as the runner; prints one line (Docker keeps it in
 * the container's health log). With `--liveness` (Kubernetes' liveness probe), a Redis that
 * does not answer counts as alive: the runner reconnects by itself, and restarting every pod
 * during a short Redis outage would only add to it.
 */
import { Redis } from 'ioredis';
import { RunnerConfigSchema, supervisorKeys } from '../contract/job.js';
import { readRunnerConfigInput } from './remote-config.js';

function done(code: number, msg: string): never {
  process.stdout.write(`${msg}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  let input: Record<string, unknown>;
  try {
    // As the runner reads it (also from SUPERVISOR_RUNNER_CONFIG_FILE, with the slot id from the environment).
    input = readRunnerConfigInput();
  } catch (err) {
    done(1, `unhealthy: ${(err as Error).message}`);
  }
  const parsed = RunnerConfigSchema.safeParse(input);
  if (!parsed.success) done(1, 'unhealthy: invalid SUPERVISOR_RUNNER_CONFIG');
  const cfg = parsed.data;
  const staleAfter = Math.max(3 * cfg.heartbeatMs, 3000);
  const redis = new Redis(cfg.redisUrl, {
    lazyConnect: true,
    connectTimeout: 3000,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
  } catch (err) {
    if (process.argv.includes('--liveness'))
      done(
        0,
        `alive: Redis does not answer (${(err as Error).message}); the runner waits for it`,
      );
    done(1, `unhealthy: Redis does not answer (${(err as Error).message})`);
  }
  const [heartbeat, host, state] = await redis.hmget(
    supervisorKeys(cfg.prefix, cfg.queueName).agent(cfg.agentId),
    'heartbeat',
    'host',
    'state',
  );
  redis.disconnect();
  if (!heartbeat)
    done(1, `unhealthy: ${cfg.agentId} has no heartbeat in Redis`);
  const age = Date.now() - Number(heartbeat);
  if (age > staleAfter)
    done(
      1,
      `unhealthy: the heartbeat of ${cfg.agentId} is ${age} ms old (stale after ${staleAfter} ms)`,
    );
  if (host && host !== cfg.host)
    done(
      1,
      `unhealthy: ${cfg.agentId} is held by a runner on ${host}, not this one (${cfg.host})`,
    );
  done(0, `healthy: ${cfg.agentId} ${state ?? ''}, heartbeat ${age} ms ago`);
}

const timer = setTimeout(
  () => done(1, 'unhealthy: the health check timed out'),
  8000,
);
timer.unref();
main().catch((err: Error) => done(1, `unhealthy: ${err.message}`));
