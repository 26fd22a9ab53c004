import { describe, expect, it } from 'vitest';
import { useCleanups } from '../helpers/cleanup.js';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import {
  openSupervisor,
  SupervisorError,
  jobIdForIssue,
  type ResultEvent,
} from '../../index.js';
import { AGENT_COMMAND, testEnv } from '../helpers/cli.js';
import { git, tempRepo } from '../helpers/repo.js';

const cleanups = useCleanups();

describe('programmatic API', () => {
  it('adds issues, runs agents in-process, scales, reports status and results', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const env = testEnv();
    const sup = await openSupervisor({
      repo: repo.dir,
      env: { ...process.env, ...env },
      config: { agentCommand: AGENT_COMMAND, dashboard: { enabled: false } },
    });
    cleanups.push(() => sup.close());
    expect(sup.queueName).toMatch(/^issues-[0-9a-f]{12}$/);
    const a = sup.addIssue({
      title: 'API issue',
      body: 'sleep: 200',
      priority: 'high',
    });
    expect(a).toMatchObject({ id: 1, status: 'open', priority: 'high' });
    expect(() => sup.addIssue({ title: '' })).toThrow(SupervisorError);
    await expect(sup.scale(1)).rejects.toThrow(/not running/);
    const results: ResultEvent[] = [];
    const got = new Promise<void>((resolve) =>
      sup.onResult(
        (e) => (results.push(e), results.length === 2 && resolve()),
        { pollMs: 50 },
      ),
    );
    await sup.start({ agents: 1 });
    const agents = await sup.scale(2);
    expect(agents.map((x) => x.id)).toEqual(['agent-001', 'agent-002']);
    await expect(sup.scale(11)).rejects.toThrow(/above the maximum/);
    // A producer using plain BullMQ with the exported contract.
    const redis = new Redis('redis://127.0.0.1:6379', {
      maxRetriesPerRequest: null,
    });
    const q = new Queue(sup.queueName, {
      connection: redis,
      prefix: sup.prefix,
    });
    await q.add(
      'issue',
      { title: 'From BullMQ', body: 'hi', priority: 'low' },
      { jobId: 'producer-1' },
    );
    await got;
    await q.close();
    redis.disconnect();
    expect(results.map((r) => r.issue.status)).toEqual(['done', 'done']);
    const detail = sup.getIssue(1);
    expect(detail.runs).toHaveLength(1);
    expect(detail.branch).toBe('issue/1');
    expect(git(repo.dir, 'rev-parse', 'issue/1')).toBe(detail.commit);
    expect(sup.listIssues().map((i) => i.title)).toEqual([
      'API issue',
      'From BullMQ',
    ]);
    const status = await sup.status();
    expect(status.agents).toHaveLength(2);
    expect(status.supervisor.running).toBe(true);
    // One agent restarted: a new runner, the other one untouched.
    const before = status.agents.map((x) => x.pid);
    const restarted = await sup.restart('agent-002');
    expect(restarted).toMatchObject({ id: 'agent-002', state: 'idle' });
    expect(restarted.pid).not.toBe(before[1]);
    expect((await sup.status()).agents.map((x) => x.pid)[0]).toBe(before[0]);
    await expect(sup.restart('agent-009')).rejects.toThrow(/not a slot/);
    expect(jobIdForIssue(1)).toBe('issue-1');
    await sup.stop();
    expect((await sup.status()).supervisor.running).toBe(false);
  });
});
