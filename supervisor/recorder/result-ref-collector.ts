import { parseResultRef, resultRefFor } from '../../contract/job.js';
import type { RecorderContext } from './context.js';

/**
 * Result refs nobody will publish are deleted: those of finished issues, and those of
 * attempts that lost their lease, were handed back or failed (a late runner's push).
 */
export class ResultRefCollector {
  private collectedAt = 0;

  constructor(private readonly ctx: RecorderContext) {}

  async collect(): Promise<void> {
    const { o } = this.ctx;
    const results = o.results;
    if (
      !results ||
      Date.now() - this.collectedAt < (results.local ? 0 : 60_000)
    )
      return;
    this.collectedAt = Date.now();
    // Live issues (queued, in progress) by the key of their result refs (foreign jobs' too).
    const live = new Map(
      o.issues
        .liveJobIds()
        .map((l) => [parseResultRef(resultRefFor(l.jobId, 1))!.key, l]),
    );
    for (const { ref } of await results.list()) {
      const p = parseResultRef(ref)!;
      const l = live.get(p.key);
      const run = l ? o.runs.get(l.jobId, p.attempt) : undefined;
      const why = !l
        ? /^\d+$/.test(p.key) && o.issues.get(Number(p.key))
          ? `issue #${p.key} is ${o.issues.get(Number(p.key))!.status}`
          : 'its issue is not queued or in progress'
        : run && run.outcome !== 'running' && run.outcome !== 'succeeded'
          ? `attempt ${p.attempt} ${run.outcome === 'lost' ? 'lost its lease' : `was ${run.outcome}`}`
          : undefined;
      if (!why) continue;
      await results.drop(ref);
      o.log('refused a result ref nobody will publish', { ref, why });
    }
  }
}
