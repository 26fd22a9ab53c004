import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import {
  BinSupervisor,
  RawWorkerProcess,
  waitUntil,
  type RawMessage,
} from '../lib/harness.js';
import { makeRepo } from '../lib/git.js';
import { connect, deletePrefix, freshPrefix, REDIS_URL } from '../lib/redis.js';
import type { BenchOptions, RowResult } from '../lib/row.js';
import { median, nowMs, round } from '../lib/stats.js';

export const spread = (v: number[]) =>
  `${Math.min(...v).toFixed(1)}–${Math.max(...v).toFixed(1)} s`;

/**
 * A runner whose host is lost while it works: its process frozen with SIGSTOP (no renewal, no
 * heartbeat, and alive, so nothing restarts it: what a dead or cut-off host looks like from
 * Redis) → the job claimed by another runner. Ours: default lease settings, the issue's next
 * attempt recorded as running in SQLite. Baseline: plain BullMQ workers with BullMQ's defaults,
 * the job's processor called in the other worker. Same fault, same machine, same run.
 */
export async function lostHostRow(o: BenchOptions): Promise<RowResult> {
  const samples = o.quick ? 1 : 3;
  const ours = await lostOurs(o, samples);
  const raw = await rawTakeover(o, samples, 'SIGSTOP');
  const a = median(ours);
  const b = median(raw);
  return {
    id: 'lost-host',
    title: `Lost runner host (SIGSTOP of a busy runner; median of ${samples})`,
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

async function lostOurs(o: BenchOptions, samples: number): Promise<number[]> {
  const repo = await makeRepo(10);
  const prefix = freshPrefix();
  const gates = mkdtempSync(join(tmpdir(), 'bench-lost-'));
  const out: number[] = [];
  try {
    // Two agents: one takes the issue and is frozen, the other takes it over. The agent works
    // (with output) until its issue's gate file exists.
    const sup = await BinSupervisor.start(
      repo.dir,
      prefix,
      `while [ ! -e '${gates}'/"$ISSUE_ID" ]; do echo working; sleep 1; done`,
      { agents: 2 },
    );
    try {
      await sup.idle(2);
      for (let k = 0; k < samples; k++) {
        const [id] = sup.addIssues([`lost host ${k + 1}`]);
        const running = () =>
          sup.ctx.runs.forIssue(id!).filter((r) => r.outcome === 'running');
        const first = await waitUntil(() => running()[0], `#${id} claimed`, {
          timeoutMs: 60_000,
        });
        const slot = sup.ctx.slots.list().find((s) => s.id === first.agent);
        if (!slot?.pid) throw new Error(`no runner pid for ${first.agent}`);
        o.log(
          `lost-host: SIGSTOP of ${first.agent} on #${id} (${k + 1}/${samples})`,
        );
        const t0 = nowMs();
        process.kill(slot.pid, 'SIGSTOP');
        try {
          await waitUntil(
            () => running().some((r) => r.attempt > first.attempt),
            `#${id} claimed again`,
            { timeoutMs: 200_000, intervalMs: 5 },
          );
          out.push((nowMs() - t0) / 1000);
        } finally {
          // The host comes back: its runner finds its lease gone and kills its agent.
          process.kill(slot.pid, 'SIGCONT');
        }
        writeFileSync(join(gates, String(id)), '');
        await sup.until(
          () => sup.ctx.issues.get(id!)?.status === 'done',
          `#${id} done`,
        );
        await sup.idle(2, 200_000);
      }
    } finally {
      await sup.stop();
    }
  } finally {
    repo.cleanup();
    rmSync(gates, { recursive: true, force: true });
    await deletePrefix(prefix);
  }
  return out;
}

/**
 * Plain BullMQ, BullMQ's default lock and stalled settings: two worker processes, one takes a job
 * and gets `signal` (SIGKILL: a crash nobody restarts; SIGSTOP: a lost host) → seconds until the
 * other worker's processor is called with it. One fresh queue per sample.
 */
export async function rawTakeover(
  o: BenchOptions,
  samples: number,
  signal: 'SIGKILL' | 'SIGSTOP',
): Promise<number[]> {
  const out: number[] = [];
  for (let k = 0; k < samples; k++) {
    const prefix = freshPrefix();
    const queueName = 'lost';
    const config = { mode: 'hold', redisUrl: REDIS_URL, prefix, queueName };
    const workers = [
      await RawWorkerProcess.start(config),
      await RawWorkerProcess.start(config),
    ];
    const queue = new Queue(queueName, { connection: connect(), prefix });
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
