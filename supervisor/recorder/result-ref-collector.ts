import {
  issueIdFromJobId,
  parseResultRef,
  resultRefFor,
} from '../../contract/job.js';
import type { Issue } from '../store/issues.js';
import type { RecorderContext } from './context.js';

const LIVE: ReadonlySet<Issue['status']> = new Set(['queued', 'in_progress']);

/**
 * Result refs nobody will publish are deleted: those of finished issues, and those of
 * attempts that lost their lease, were handed back or failed (a late runner's push).
 * Each ref is looked up by its own key, so a round costs what the refs are, not the backlog.
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
    let foreign: Map<string, { id: number; jobId: string }> | undefined;
    for (const { ref } of await results.list()) {
      const p = parseResultRef(ref)!;
      let l: { id: number; jobId: string } | undefined;
      if (/^\d+$/.test(p.key)) {
        const i = o.issues.get(Number(p.key));
        if (
          i?.jobId &&
          LIVE.has(i.status) &&
          issueIdFromJobId(i.jobId) === i.id
        )
          l = { id: i.id, jobId: i.jobId };
      } else {
        // A foreign job's ref names a hash of its job id: the live foreign jobs, once per round
        // and only when such a ref exists (remote runners working on adopted jobs).
        foreign ??= this.liveForeignByKey();
        l = foreign.get(p.key);
      }
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

  private liveForeignByKey(): Map<string, { id: number; jobId: string }> {
    const out = new Map<string, { id: number; jobId: string }>();
    for (let after = 0; ;) {
      const page = this.ctx.o.issues.liveJobPage(after, 1000);
      for (const l of page)
        if (issueIdFromJobId(l.jobId) === undefined)
          out.set(parseResultRef(resultRefFor(l.jobId, 1))!.key, l);
      if (page.length < 1000) return out;
      after = page[page.length - 1]!.id;
    }
  }
}
