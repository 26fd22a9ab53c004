import { Queue } from 'bullmq';
import { BULL_PRIORITY, PRIORITIES } from '../../contract/job.js';
import { BinSupervisor } from '../lib/harness.js';
import { makeRepo } from '../lib/git.js';
import { connect, deletePrefix, freshPrefix } from '../lib/redis.js';
import type { BenchOptions, RowResult } from '../lib/row.js';
import { fmtMs, fmtRange, median, nowMs, round } from '../lib/stats.js';

const N = 10_000;
const body = (i: number) =>
  `Issue ${i}: the login redirect drops the query string.\nSteps: open /login?next=/a, sign in.\n`;

/**
 * 10,000 open issues in SQLite until all are jobs in the queue (the running supervisor's
 * feeder), vs one BullMQ addBulk of the same 10,000 jobs (same data, ids and options).
 */
export async function feedRow(o: BenchOptions): Promise<RowResult> {
  // Cheap (a second or two each): three in quick mode too, the median is far steadier.
  const repeats = 3;
  const repo = await makeRepo(1);
  const prefix = freshPrefix();
  const ours: number[] = [];
  const raw: number[] = [];
  const inserts: number[] = [];
  try {
    const sup = await BinSupervisor.start(repo.dir, prefix, 'true', {
      agents: 0,
    });
    const conn = connect();
    try {
      for (let r = 0; r < repeats; r++) {
        o.log(`feed: raw addBulk of ${N} jobs (${r + 1}/${repeats})`);
        const queue = new Queue(`raw-feed-${r}`, { connection: conn, prefix });
        const jobs = Array.from({ length: N }, (_, i) => {
          const priority = PRIORITIES[i % 4]!;
          return {
            name: 'issue',
            data: {
              issueId: i + 1,
              title: `feed ${i + 1}`,
              body: body(i + 1),
              bodyEncoding: 'utf8',
              priority,
            },
            opts: {
              jobId: `issue-${i + 1}`,
              priority: BULL_PRIORITY[priority],
              attempts: 2,
              backoff: { type: 'exponential', delay: 10_000 },
              removeOnComplete: { age: 14 * 24 * 3600 },
              removeOnFail: { age: 30 * 24 * 3600 },
            },
          };
        });
        let t0 = nowMs();
        await queue.addBulk(jobs);
        raw.push(nowMs() - t0);
        await queue.close();

        o.log(
          `feed: ours, ${N} open issues into the queue (${r + 1}/${repeats})`,
        );
        t0 = nowMs();
        sup.ctx.db.transaction(() => {
          for (let i = 0; i < N; i++)
            sup.ctx.issues.add({
              title: `feed ${i + 1}`,
              body: body(i + 1),
              priority: PRIORITIES[i % 4]!,
            });
        })();
        const t1 = nowMs();
        inserts.push(t1 - t0);
        // Marked queued only after their jobs are in Redis.
        await sup.until(
          () => sup.ctx.issues.counts().open === 0,
          'all issues queued',
          5,
        );
        ours.push(nowMs() - t1);
      }
    } finally {
      conn.disconnect();
      await sup.stop();
    }
  } finally {
    repo.cleanup();
    await deletePrefix(prefix);
  }
  const oursMs = median(ours);
  const rawMs = median(raw);
  const ratio = rawMs / oursMs;
  return {
    id: 'feed',
    title: `Feed ${N.toLocaleString('en')} issues${repeats > 1 ? ` (median of ${repeats})` : ''}`,
    ours: `${fmtMs(oursMs)} (${fmtRange(ours)}; ${Math.round(N / (oursMs / 1000)).toLocaleString('en')}/s)`,
    baseline: `${fmtMs(rawMs)} addBulk (${fmtRange(raw)}; ${Math.round(N / (rawMs / 1000)).toLocaleString('en')}/s)`,
    comparison: `${ratio.toFixed(2)}×`,
    target: '≥ 0.7×',
    met: ratio >= 0.7,
    data: {
      issues: N,
      oursMs: ours.map((v) => round(v)),
      rawMs: raw.map((v) => round(v)),
      sqliteInsertMs: inserts.map((v) => round(v)),
      ratio: round(ratio, 3),
    },
  };
}
