import type { Queue } from 'bullmq';
import { jobIdForIssue } from '../contract/job.js';
import type { Context } from './context.js';
import { coerceError } from './errors.js';
import type { AgentRuntime } from './runtimes/runtime.js';
import { cachedStatement } from './store/statements.js';

type Log = (msg: string, fields?: Record<string, unknown>) => void;

/**
 * Makes a cancel true in the queue, whoever wrote it (CLI, API, page): a cancelled issue's
 * running agent is killed (its attempt fails; its late result is refused by the recorder, which
 * never publishes a result of a cancelled issue), and a job waiting or delayed for a retry is
 * removed, so a cancelled issue is never worked again.
 */
export class CancelEnforcer {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(
    private readonly ctx: Context,
    private readonly queue: Queue,
    private readonly runtime: AgentRuntime,
    private readonly log: Log,
    private readonly intervalMs = 1_000,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      // Cancelled issues with an attempt still running, or cancelled in the last 10 minutes.
      const rows = cachedStatement(
        this.ctx.db,
        `SELECT id FROM issues WHERE status = 'cancelled' AND (updated_at > ?
           OR id IN (SELECT issue_id FROM runs WHERE outcome = 'running'))`,
      ).all(Date.now() - 600_000) as Array<{ id: number }>;
      for (const { id } of rows) await this.enforce(id);
    } catch (err) {
      this.log('cancel: enforcing failed', { error: coerceError(err).message });
    } finally {
      this.busy = false;
    }
  }

  private async enforce(id: number): Promise<void> {
    for (const run of this.ctx.runs.forIssue(id)) {
      if (run.outcome !== 'running') continue;
      // Recorded before the kill: the runner's report of the killed agent ("exited with signal
      // SIGKILL") can arrive while the kill is awaited, and a run's error is filled in once.
      this.ctx.runs.upsert(id, run.jobId, run.attempt, {
        outcome: 'failed',
        finishedAt: Date.now(),
        error: 'cancelled: the issue was cancelled while this attempt ran',
      });
      const killed = run.agent
        ? await this.runtime
            .killAgent(run.agent, { jobId: run.jobId, attempt: run.attempt })
            .catch(() => false)
        : false;
      this.log('cancel: stopped a running attempt', {
        issueId: id,
        agentId: run.agent,
        attempt: run.attempt,
        agentKilled: killed,
      });
    }
    const job = await this.queue.getJob(jobIdForIssue(id));
    if (!job) return;
    const state = await job.getState();
    if (['waiting', 'prioritized', 'delayed', 'paused'].includes(state))
      await job.remove().catch(() => undefined);
  }
}
