import { join } from 'node:path';
import { Queue } from 'bullmq';
import { BinSupervisor, RawWorkerProcess } from '../lib/harness.js';
import { git, makeRepo } from '../lib/git.js';
import { connect, deletePrefix, freshPrefix, REDIS_URL } from '../lib/redis.js';
import type { BenchOptions, RowResult } from '../lib/row.js';
import { nowMs, round } from '../lib/stats.js';
import {
  cpuDelta,
  cpuSum,
  processCpuMs,
  treeCpu,
  type TreeCpu,
} from '../lib/cpu.js';

const AGENTS = 4;
const REPO_FILES = 1000;
/** The no-op agent that changes one file. */
const AGENT_COMMAND = `printf '%s\\n' "$ISSUE_ID" > bench-change.txt`;

/**
 * 4 agents work through N issues (agent: change one file), counted as done in SQLite, vs a
 * plain BullMQ pool of 4 workers doing git reset + the same command + commit per job.
 */
export async function throughputRow(o: BenchOptions): Promise<RowResult> {
  const n = o.quick ? 100 : 1000;
  const repo = await makeRepo(REPO_FILES);
  const prefix = freshPrefix();
  const rawPrefix = freshPrefix();
  try {
    // Raw pool first (its worktrees are removed before ours run).
    o.log(`throughput: raw BullMQ pool, ${AGENTS} workers, ${n} jobs`);
    const worktrees = [];
    for (let k = 1; k <= AGENTS; k++) {
      const wt = {
        path: join(repo.dir, '.worktrees', `raw-${k}`),
        branch: `raw/${k}`,
      };
      await git(repo.dir, [
        'worktree',
        'add',
        '-q',
        '-b',
        wt.branch,
        wt.path,
        'main',
      ]);
      worktrees.push(wt);
    }
    const conn = connect();
    const queue = new Queue('raw-throughput', {
      connection: conn,
      prefix: rawPrefix,
    });
    // One worker process per worktree, as our runners are: the strongest hand-written pool.
    const pool = await Promise.all(
      worktrees.map((wt) =>
        RawWorkerProcess.start({
          mode: 'pool',
          redisUrl: REDIS_URL,
          prefix: rawPrefix,
          queueName: 'raw-throughput',
          worktrees: [wt],
          base: 'main',
          agentCommand: AGENT_COMMAND,
        }),
      ),
    );
    let rawS: number;
    let rawCpu: TreeCpu;
    let rawRedisMs: number | undefined;
    try {
      let completed = 0;
      let failed = 0;
      const all = new Promise<void>((resolve) => {
        for (const w of pool) {
          w.on((m) => {
            if (m.type === 'completed') completed += 1;
            if (m.type === 'failed') failed += 1;
            if (completed + failed === n) resolve();
          });
        }
      });
      const redisPid = await redisServerPid();
      const redis0 = redisPid && processCpuMs(redisPid);
      const cpu0 = pool.map((w) => treeCpu(w.child.pid!, rawRole));
      const t0 = nowMs();
      await queue.addBulk(
        Array.from({ length: n }, (_, i) => ({
          name: 'issue',
          data: { issueId: i + 1, title: `throughput ${i + 1}` },
          opts: {
            jobId: `issue-${i + 1}`,
            priority: 3,
            removeOnComplete: { age: 3600 },
          },
        })),
      );
      await all;
      rawS = (nowMs() - t0) / 1000;
      rawCpu = cpuSum(
        pool.map((w, i) => cpuDelta(cpu0[i]!, treeCpu(w.child.pid!, rawRole))),
      );
      const redis1 = redisPid && processCpuMs(redisPid);
      if (redis0 !== undefined && redis1 !== undefined)
        rawRedisMs = redis1 - redis0;
      if (failed) throw new Error(`${failed} raw jobs failed`);
    } finally {
      await Promise.all(pool.map((w) => w.stop()));
      await queue.close();
      conn.disconnect();
      await deletePrefix(rawPrefix);
    }
    for (const wt of worktrees)
      await git(repo.dir, ['worktree', 'remove', '--force', wt.path]);

    o.log(`throughput: ours, ${AGENTS} agents, ${n} issues`);
    const ours = await BinSupervisor.start(repo.dir, prefix, AGENT_COMMAND, {
      agents: AGENTS,
    });
    let oursS: number;
    let oursCpu: TreeCpu;
    let oursRedisMs: number | undefined;
    let committed = 0;
    try {
      await ours.idle(AGENTS);
      const redisPid = await redisServerPid();
      const redis0 = redisPid && processCpuMs(redisPid);
      const cpu0 = treeCpu(ours.pid, oursRole);
      const t0 = nowMs();
      ours.addIssues(
        Array.from({ length: n }, (_, i) => `throughput ${i + 1}`),
      );
      await ours.until(
        () => {
          const c = ours.ctx.issues.counts();
          return c.done + c.failed === n;
        },
        `${n} issues finished`,
        20,
      );
      oursS = (nowMs() - t0) / 1000;
      oursCpu = cpuDelta(cpu0, treeCpu(ours.pid, oursRole));
      const redis1 = redisPid && processCpuMs(redisPid);
      if (redis0 !== undefined && redis1 !== undefined)
        oursRedisMs = redis1 - redis0;
      const counts = ours.ctx.issues.counts();
      if (counts.done !== n)
        throw new Error(
          `only ${counts.done} of ${n} issues done (${JSON.stringify(counts)})`,
        );
      committed = ours.ctx.issues
        .list({ status: 'done' })
        .filter((i) => i.commit).length;
    } finally {
      await ours.stop();
    }
    const oursRate = n / oursS;
    const rawRate = n / rawS;
    const ratio = oursRate / rawRate;
    const perIssue = (ms: number) => round(ms / n, 2);
    const cpuRatio = oursCpu.totalMs / rawCpu.totalMs;
    return {
      id: 'throughput',
      title: `Throughput, ${AGENTS} agents, ${n} issues`,
      ours: `${oursRate.toFixed(1)} issues/s`,
      baseline: `${rawRate.toFixed(1)} jobs/s raw pool`,
      comparison: `${ratio.toFixed(2)}×; CPU/issue ${perIssue(oursCpu.totalMs)} vs ${perIssue(rawCpu.totalMs)} ms (${cpuRatio.toFixed(2)}×)`,
      target: '≥ 0.8×; CPU ≤ 1.25×',
      met: ratio >= 0.8 && cpuRatio <= 1.25,
      data: {
        issues: n,
        agents: AGENTS,
        repoFiles: REPO_FILES,
        oursSeconds: round(oursS),
        rawSeconds: round(rawS),
        oursPerS: round(oursRate),
        rawPerS: round(rawRate),
        ratio: round(ratio, 3),
        issuesWithCommit: committed,
        // CPU per issue (ms) from /proc, by process role; `children` is what each reaped.
        cpuPerIssueMs: {
          ours: perIssue(oursCpu.totalMs),
          raw: perIssue(rawCpu.totalMs),
          ratio: round(cpuRatio, 3),
          oursParts: mapValues(oursCpu.parts, perIssue),
          rawParts: mapValues(rawCpu.parts, perIssue),
          // The shared Redis, whoever else uses it meanwhile (other engineers' tests).
          redisOurs: oursRedisMs === undefined ? null : perIssue(oursRedisMs),
          redisRaw: rawRedisMs === undefined ? null : perIssue(rawRedisMs),
        },
      },
    };
  } finally {
    repo.cleanup();
    await deletePrefix(prefix);
  }
}

const oursRole = (p: { comm: string; cmdline: string }): string =>
  p.cmdline.includes('agent-runner/main.js')
    ? 'runner'
    : p.cmdline.includes('supervisor/cli/main.js')
      ? 'supervisor'
      : p.comm;

const rawRole = (p: { comm: string; cmdline: string }): string =>
  p.cmdline.includes('raw/worker.js') ? 'worker' : p.comm;

function mapValues(
  o: Record<string, number>,
  f: (v: number) => number,
): Record<string, number> {
  return Object.fromEntries(
    Object.entries(o)
      .filter(([, v]) => v !== 0)
      .map(([k, v]) => [k, f(v)]),
  );
}

/** The pid of the Redis server, when it runs on this host (INFO server's process_id). */
async function redisServerPid(): Promise<number | undefined> {
  const r = connect();
  try {
    const info = await r.info('server');
    const pid = Number(/^process_id:(\d+)/m.exec(info)?.[1]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  } finally {
    r.disconnect();
  }
}
