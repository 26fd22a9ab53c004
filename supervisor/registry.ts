import type { Redis } from 'ioredis';
import { supervisorKeys } from '../contract/job.js';

/** What a runner reports about itself in Redis (its heartbeat). */
export interface RegisteredAgent {
  agentId: string;
  host: string;
  pid: number | null;
  version: string;
  /** `blocked`: a remote-mode runner whose git remote is unreachable (it takes no jobs). */
  state: 'starting' | 'idle' | 'working' | 'stopping' | 'blocked';
  since: number;
  heartbeat: number;
  jobId: string | null;
  issueId: string | null;
  title: string | null;
  /** Why a blocked runner takes no jobs (credentials already removed by the runner). */
  error: string | null;
  /** The agent process (its group leader) while working. */
  agentPid: number | null;
}

/** Runners registered in Redis with a live heartbeat, whoever started them. */
export async function readRegistry(
  redis: Redis,
  prefix: string,
  queueName: string,
  staleAfterMs: number,
): Promise<Map<string, RegisteredAgent>> {
  const keys = supervisorKeys(prefix, queueName);
  const now = Date.now();
  await redis.zremrangebyscore(
    keys.agents,
    '-inf',
    String(now - Math.max(staleAfterMs, 1000) * 10),
  );
  const ids = await redis.zrange(keys.agents, '0', '-1');
  const out = new Map<string, RegisteredAgent>();
  if (ids.length === 0) return out;
  const pipe = redis.pipeline();
  for (const id of ids) pipe.hgetall(keys.agent(id));
  const res = (await pipe.exec()) ?? [];
  ids.forEach((id, i) => {
    const h = res[i]?.[1] as Record<string, string> | undefined;
    if (!h || !h.heartbeat) return;
    const heartbeat = Number(h.heartbeat);
    if (now - heartbeat > staleAfterMs) return;
    out.set(id, {
      agentId: id,
      host: h.host ?? '',
      pid: h.pid ? Number(h.pid) : null,
      version: h.version ?? '',
      state: (h.state as RegisteredAgent['state']) ?? 'starting',
      since: Number(h.since ?? heartbeat),
      heartbeat,
      jobId: h.jobId || null,
      issueId: h.issueId || null,
      title: h.title || null,
      error: h.error || null,
      agentPid: h.agentPid ? Number(h.agentPid) : null,
    });
  });
  return out;
}
