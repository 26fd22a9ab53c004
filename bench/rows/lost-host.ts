import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { runningDaemon } from '../../supervisor/pidfile.js';
import { RUNNER_NODE_FLAGS } from '../../supervisor/runtimes/process.js';
import {
  BinSupervisor,
  RawWorkerProcess,
  waitUntil,
  type RawMessage,
} from '../lib/harness.js';
import { makeRepo } from '../lib/git.js';
import { BoundRedis, SecondHost, freePort } from '../lib/netns.js';
import { connect, deletePrefix, freshPrefix, REDIS_URL } from '../lib/redis.js';
import type { BenchOptions, RowResult } from '../lib/row.js';
import { median, nowMs, round } from '../lib/stats.js';

export const spread = (v: number[]) =>
  `${Math.min(...v).toFixed(1)}–${Math.max(...v).toFixed(1)} s`;

const RUNNER = fileURLToPath(
  new URL('../../agent-runner/main.js', import.meta.url),
);
const GIT_TOKEN = 'bench-git-token-0123456789abcdef';
const DASHBOARD_TOKEN = 'bench-dashboard-token-0123456789';
const REMOTE = 'agent-101';
/** The remote agent works (with output) until it is stopped; the local one finishes at once. */
const REMOTE_AGENT = 'while true; do echo working; sleep 1; done';
const LOCAL_AGENT = `printf '%s\\n' "$ISSUE_ID" > lost-host.txt`;

/**
 * A runner on another host loses its network while it holds an issue: the two-host setup of
 * test/remote/two-hosts.test.ts (a network namespace joined by veth links; Redis and the git
 * endpoint reached only over them), both links cut on our side while its agent works, until an
 * agent on this host runs the issue's next attempt (SQLite shows it). Baseline in the same run,
 * interleaved sample by sample: plain BullMQ workers with BullMQ's defaults, one in the namespace
 * holding a job, one here, the same cut, until the local worker's processor is called with it.
 * Both sides: the same Redis (on the link), the same node flags, the other worker already waiting.
 */
export async function lostHostRow(o: BenchOptions): Promise<RowResult> {
  const samples = o.quick ? 1 : 3;
  const host = SecondHost.create();
  const ours: number[] = [];
  const raw: number[] = [];
  try {
    const redis = new BoundRedis(
      host.hostAddress('redis'),
      await freePort(host.hostAddress('redis')),
      { aof: false },
    );
    await redis.start();
    try {
      const side = await OursAcrossHosts.start(host, redis.url);
      try {
        for (let k = 0; k < samples; k++) {
          o.log(`lost-host: ours, ${REMOTE} cut off (${k + 1}/${samples})`);
          ours.push(await side.sample(k));
          o.log(
            `lost-host: plain BullMQ, worker cut off (${k + 1}/${samples})`,
          );
          raw.push(await rawCutOff(host, redis.url));
        }
      } finally {
        await side.stop();
      }
    } finally {
      await redis.stop();
    }
  } finally {
    host.destroy();
  }
  const a = median(ours);
  const b = median(raw);
  return {
    id: 'lost-host',
    title: `Lost remote host (two-host setup, links cut; median of ${samples})`,
    ours: `${a.toFixed(1)} s to re-claim (${spread(ours)})`,
    baseline: `${b.toFixed(1)} s plain BullMQ workers, defaults (${spread(raw)})`,
    comparison: `${(a / b).toFixed(2)}×`,
    target: '≤ 30 s',
    met: Math.max(...ours) <= 30,
    data: {
      samples,
      oursSeconds: ours.map((v) => round(v, 3)),
      rawSeconds: raw.map((v) => round(v, 3)),
    },
  };
}

/** Cuts both of the second host's links, runs `until`, and restores them. */
async function cutOff<T>(
  host: SecondHost,
  until: () => Promise<T>,
): Promise<T> {
  host.down('redis');
  host.down('git');
  try {
    return await until();
  } finally {
    host.up('redis');
    host.up('git');
  }
}

/** A real supervisor here (default lease settings, one local slot when asked) and a remote-mode runner there. */
class OursAcrossHosts {
  private constructor(
    private readonly host: SecondHost,
    private readonly sup: BinSupervisor,
    private readonly runner: ChildProcess,
    private readonly cleanup: () => void,
  ) {}

  static async start(
    host: SecondHost,
    redisUrl: string,
  ): Promise<OursAcrossHosts> {
    const repo = await makeRepo(10);
    const prefix = freshPrefix();
    const sup = await BinSupervisor.start(repo.dir, prefix, LOCAL_AGENT, {
      agents: 0,
      redisUrl,
      env: {
        SUPERVISOR_DASHBOARD_HOST: host.hostAddress('git'),
        SUPERVISOR_DASHBOARD_TOKEN: DASHBOARD_TOKEN,
        SUPERVISOR_GIT_TOKEN: GIT_TOKEN,
      },
    });
    const url = await waitUntil(
      () => runningDaemon(sup.ctx.paths.pidFile)?.dashboardUrl,
      'the dashboard URL',
      { timeoutMs: 60_000, intervalMs: 50 },
    );
    // What a user writes for a runner on another host; lease settings left to their defaults.
    const config = {
      agentId: REMOTE,
      host: 'second-host',
      redisUrl,
      prefix,
      queueName: sup.ctx.queueName,
      baseBranch: 'main',
      agentCommand: REMOTE_AGENT,
      lease: {},
      git: {
        mode: 'remote',
        url: new URL('git/repo.git', url).toString(),
        cacheDir: '/tmp/runner-cache',
      },
    };
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env))
      if (v !== undefined && !k.startsWith('SUPERVISOR_') && k !== 'REDIS_URL')
        env[k] = v;
    const [w, ...wargs] = host.wrapper();
    const runner = spawn(
      w!,
      [...wargs, process.execPath, ...RUNNER_NODE_FLAGS, RUNNER],
      {
        env: {
          ...env,
          SUPERVISOR_RUNNER_CONFIG: JSON.stringify(config),
          SUPERVISOR_GIT_TOKEN: GIT_TOKEN,
        },
        stdio: 'ignore',
      },
    );
    const side = new OursAcrossHosts(host, sup, runner, repo.cleanup);
    await side.agentIs(REMOTE, 'idle', 120_000);
    return side;
  }

  private async agentIs(
    id: string,
    state: string,
    timeoutMs: number,
  ): Promise<void> {
    await waitUntil(
      async () => {
        if (this.runner.exitCode !== null)
          throw new Error(`the remote runner exited (${this.runner.exitCode})`);
        return (await this.sup.registry()).get(id)?.state === state;
      },
      `${id} ${state}`,
      { timeoutMs, intervalMs: 20 },
    );
  }

  /** One cut: seconds from the cut until an agent here runs the issue's next attempt. */
  async sample(k: number): Promise<number> {
    const { sup } = this;
    const [id] = sup.addIssues([`lost host ${k + 1}`]);
    const runs = () => sup.ctx.runs.forIssue(id!);
    const first = await waitUntil(
      () => runs().find((r) => r.outcome === 'running'),
      `#${id} claimed`,
      { timeoutMs: 120_000 },
    );
    if (first.agent !== REMOTE)
      throw new Error(`#${id} was claimed by ${first.agent}, not ${REMOTE}`);
    // The other agent is up and waiting before the host is lost, as in the baseline.
    sup.scale(1);
    await this.agentIs('agent-001', 'idle', 120_000);
    const t0 = nowMs();
    const s = await cutOff(this.host, async () => {
      await waitUntil(
        () => runs().some((r) => r.attempt > first.attempt),
        `#${id} claimed again`,
        { timeoutMs: 200_000, intervalMs: 5 },
      );
      return (nowMs() - t0) / 1000;
    });
    await sup.until(
      () => sup.ctx.issues.get(id!)?.status === 'done',
      `#${id} done`,
    );
    sup.scale(0);
    // Back on the network, the remote runner finds its lease gone, stops its agent, waits again.
    await this.agentIs(REMOTE, 'idle', 120_000);
    await waitUntil(
      async () => !(await sup.registry()).has('agent-001'),
      'agent-001 stopped',
      { timeoutMs: 60_000, intervalMs: 20 },
    );
    return s;
  }

  async stop(): Promise<void> {
    this.runner.kill('SIGKILL');
    await this.sup.stop();
    this.cleanup();
  }
}

/**
 * Plain BullMQ, BullMQ's default lock and stalled settings: a worker on the second host takes a
 * job, a worker here waits; both links are cut → seconds until the local worker's processor is
 * called with the job. A fresh queue per sample.
 */
async function rawCutOff(host: SecondHost, redisUrl: string): Promise<number> {
  const prefix = freshPrefix();
  const config = { mode: 'hold', redisUrl, prefix, queueName: 'lost' };
  const conn = connect(redisUrl);
  const queue = new Queue('lost', { connection: conn, prefix });
  const workers: RawWorkerProcess[] = [];
  try {
    const remote = await RawWorkerProcess.start(config, host.wrapper());
    workers.push(remote);
    const held = remote.next((m: RawMessage) => m.type === 'called');
    await queue.add('job', {});
    await held;
    const local = await RawWorkerProcess.start(config);
    workers.push(local);
    const called = local.next((m: RawMessage) => m.type === 'called', 300_000);
    const t0 = nowMs();
    return await cutOff(host, async () => {
      await called;
      return (nowMs() - t0) / 1000;
    });
  } finally {
    for (const w of workers) w.child.kill('SIGKILL');
    await queue.close();
    conn.disconnect();
    await deletePrefix(prefix, redisUrl);
  }
}

/**
 * Plain BullMQ, BullMQ's default lock and stalled settings: two worker processes, one takes a job
 * and gets `signal` (SIGKILL: a crash nobody restarts) → seconds until the other worker's
 * processor is called with it. One fresh queue per sample (the recovery row's baseline).
 */
export async function rawTakeover(
  o: BenchOptions,
  samples: number,
  signal: 'SIGKILL' | 'SIGSTOP',
): Promise<number[]> {
  const out: number[] = [];
  for (let k = 0; k < samples; k++) {
    const prefix = freshPrefix();
    const config = {
      mode: 'hold',
      redisUrl: REDIS_URL,
      prefix,
      queueName: 'lost',
    };
    const workers = [
      await RawWorkerProcess.start(config),
      await RawWorkerProcess.start(config),
    ];
    const queue = new Queue('lost', { connection: connect(), prefix });
    try {
      const calls = workers.map((w) =>
        w.next((m: RawMessage) => m.type === 'called', 300_000).then(() => w),
      );
      await queue.add('job', { n: k });
      const holder = await Promise.race(calls);
      o.log(`${signal} of a busy plain BullMQ worker (${k + 1}/${samples})`);
      const t0 = nowMs();
      process.kill(holder.child.pid!, signal);
      await calls[workers.indexOf(holder) === 0 ? 1 : 0];
      out.push((nowMs() - t0) / 1000);
    } finally {
      for (const w of workers) w.child.kill('SIGKILL');
      await queue.close();
      await deletePrefix(prefix);
    }
  }
  return out;
}
