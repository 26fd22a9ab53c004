import { BinSupervisor, waitUntil } from '../lib/harness.js';
import { makeRepo } from '../lib/git.js';
import { deletePrefix, freshPrefix } from '../lib/redis.js';
import type { BenchOptions, RowResult } from '../lib/row.js';
import { median, nowMs, round } from '../lib/stats.js';
import { rawTakeover, spread } from './lost-host.js';

/** The claim-based designs we replace free a dead agent's issue when its 15-minute claim expires. */
const CLAIM_EXPIRY_S = 15 * 60;

/**
 * kill -9 of a runner busy on an issue → the issue is claimed again (its next attempt recorded
 * as running in SQLite), with the default lease and restart settings. One kill per slot, so
 * each kill meets a fresh restart backoff, as a single crash would. Baseline, measured in the
 * same run: kill -9 of a busy plain BullMQ worker (BullMQ's defaults) until another worker
 * takes its job over; the 15-minute claim of the designs we replace is kept as a note.
 */
export async function recoveryRow(o: BenchOptions): Promise<RowResult> {
  const kills = o.quick ? 2 : 5;
  const repo = await makeRepo(100);
  const prefix = freshPrefix();
  const seconds: number[] = [];
  try {
    // The agent works (with output, so it shows progress) until it is killed.
    const ours = await BinSupervisor.start(
      repo.dir,
      prefix,
      'while true; do echo working; sleep 1; done',
      { agents: kills },
    );
    try {
      await ours.idle(kills);
      const ids = ours.addIssues(
        Array.from({ length: kills }, (_, i) => `recovery ${i + 1}`),
      );
      const running = (id: number) =>
        ours.ctx.runs.forIssue(id).filter((r) => r.outcome === 'running');
      await waitUntil(
        () => ids.every((id) => running(id).length === 1),
        'every issue claimed',
        { timeoutMs: 60_000 },
      );
      for (const [k, id] of ids.entries()) {
        o.log(
          `recovery: kill -9 of the runner working on #${id} (${k + 1}/${kills})`,
        );
        const first = running(id)[0]!;
        const slot = ours.ctx.slots.list().find((s) => s.id === first.agent);
        if (!slot?.pid) throw new Error(`no runner pid for ${first.agent}`);
        const t0 = nowMs();
        process.kill(slot.pid, 'SIGKILL');
        await waitUntil(
          () => running(id).some((r) => r.attempt > first.attempt),
          `#${id} claimed again`,
          { timeoutMs: 200_000, intervalMs: 5 },
        );
        seconds.push((nowMs() - t0) / 1000);
      }
    } finally {
      await ours.stop();
    }
  } finally {
    repo.cleanup();
    await deletePrefix(prefix);
  }
  o.log('recovery: baseline, kill -9 of a busy plain BullMQ worker (defaults)');
  const raw = await rawTakeover(o, o.quick ? 1 : 3, 'SIGKILL');
  const s = median(seconds);
  const b = median(raw);
  return {
    id: 'recovery',
    title: `Recovery after kill -9 of a busy runner (median of ${kills}; baseline of ${raw.length})`,
    ours: `${s.toFixed(1)} s to re-claim (${spread(seconds)})`,
    baseline: `${b.toFixed(1)} s plain BullMQ worker killed, another takes over (${spread(raw)})`,
    comparison: `${(s / b).toFixed(2)}× (${Math.round(CLAIM_EXPIRY_S / s)}× sooner than a 15-min claim)`,
    target: '',
    met: undefined,
    data: {
      kills,
      seconds: seconds.map((v) => round(v, 3)),
      rawSeconds: raw.map((v) => round(v, 3)),
      claimExpirySeconds: CLAIM_EXPIRY_S,
    },
  };
}
