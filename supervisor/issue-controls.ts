import type { Queue } from 'bullmq';
import { BULL_PRIORITY, jobIdForIssue } from '../contract/job.js';
import type { Context } from './context.js';
import { SupervisorError } from './errors.js';
import { jobDataFor } from './feeder.js';
import { DependencyStore } from './store/deps.js';
import { withChange } from './store/history.js';
import {
  validateNewIssue,
  validatePriority,
  type Issue,
  type IssueStatus,
} from './store/issues.js';

/** Where each control may start from (the same in the CLI, the API and the page). */
const RETRYABLE: ReadonlySet<IssueStatus> = new Set([
  'failed',
  'conflict',
  'check-failed',
  'cancelled',
  'blocked',
]);
const CANCELLABLE: ReadonlySet<IssueStatus> = new Set([
  'open',
  'queued',
  'in_progress',
  'done',
  'conflict',
  'check-failed',
  'blocked',
]);
const REOPENABLE: ReadonlySet<IssueStatus> = new Set([
  'done',
  'failed',
  'merged',
  'conflict',
  'check-failed',
  'cancelled',
  'blocked',
]);
const PARTICIPLE: Record<string, string> = {
  retry: 'retried',
  reopen: 'reopened',
  cancel: 'cancelled',
};
const WAITING_STATES = new Set(['waiting', 'prioritized', 'delayed', 'paused']);

export interface IssueEdit {
  title?: string;
  body?: Buffer | string;
  priority?: string;
  /** Replaces the issue's dependencies (cycles are refused). */
  dependsOn?: number[];
}

/**
 * Retry, cancel, edit and reopen an issue. SQLite says what the issue is (one transaction,
 * recorded in its history with who and why); the queue follows: a waiting job is removed or
 * changed in place. A running attempt of a cancelled issue is stopped by the running supervisor
 * (CancelEnforcer), and its late result is refused by the recorder.
 */
export class IssueControls {
  constructor(
    private readonly ctx: Context,
    /** The queue, when Redis can be reached (controls still work on SQLite without it). */
    private readonly queue: () => Promise<Queue | undefined>,
    private readonly actor: string,
  ) {}

  /** Back to open: the feeder replaces its finished job (attempt numbers go on). */
  retry(id: number): Issue {
    return this.move(id, RETRYABLE, 'retry', 'open', 'retried');
  }

  /** Every failed issue back to open; returns them. */
  retryFailed(): Issue[] {
    return this.ctx.issues
      .list({ status: 'failed' })
      .map((i) => this.retry(i.id));
  }

  /** Work it again from scratch, whatever it came to (merged included). */
  reopen(id: number): Issue {
    return this.move(id, REOPENABLE, 'reopen', 'open', 'reopened');
  }

  async cancel(id: number, why?: string): Promise<Issue> {
    const issue = this.move(
      id,
      CANCELLABLE,
      'cancel',
      'cancelled',
      why ?? 'cancelled',
    );
    const queue = await this.queue().catch(() => undefined);
    const job = await queue?.getJob(jobIdForIssue(id)).catch(() => undefined);
    if (job && WAITING_STATES.has(await job.getState()))
      await job.remove().catch(() => undefined);
    return issue;
  }

  /** Title, body, priority; refused while an agent works on it. A waiting job changes in place. */
  async edit(id: number, edit: IssueEdit): Promise<Issue> {
    const before = this.ctx.issues.require(id);
    if (before.status === 'in_progress' || before.status === 'landing')
      throw new SupervisorError(
        'ERR_SUP_ISSUE_STATE',
        `issue #${id} is ${before.status}: it cannot be edited while ${before.status === 'landing' ? 'it lands' : 'an agent works on it'}`,
        {
          hint: `wait until it finished, or cancel it first (supervisor issue cancel ${id})`,
        },
      );
    if (
      edit.title === undefined &&
      edit.body === undefined &&
      edit.priority === undefined &&
      edit.dependsOn === undefined
    )
      throw new SupervisorError('ERR_SUP_USAGE', 'nothing to change', {
        hint: 'pass --title, --body, --body-file or --priority',
      });
    const v = validateNewIssue({
      title: edit.title ?? before.title,
      body: edit.body ?? before.body,
      priority: validatePriority(edit.priority ?? before.priority),
    });
    withChange(this.ctx.db, { actor: this.actor, reason: 'edited' }, () => {
      this.ctx.db
        .prepare(
          `UPDATE issues SET title = ?, body = ?, priority = ?, updated_at = ? WHERE id = ?`,
        )
        .run(v.title, v.body, v.priority, Date.now(), id);
      if (edit.dependsOn !== undefined)
        new DependencyStore(this.ctx.db).set(id, edit.dependsOn);
    });
    const issue = this.ctx.issues.require(id);
    const queue = await this.queue().catch(() => undefined);
    const job = await queue?.getJob(jobIdForIssue(id)).catch(() => undefined);
    if (job && WAITING_STATES.has(await job.getState())) {
      if (v.priority !== before.priority)
        await job.changePriority({ priority: BULL_PRIORITY[v.priority] });
      await job.updateData({
        ...jobDataFor(issue, job.data?.attemptOffset ?? 0),
        ...(job.data?.landing ? { landing: job.data.landing } : {}),
      });
    }
    return issue;
  }

  private move(
    id: number,
    from: ReadonlySet<IssueStatus>,
    verb: string,
    to: IssueStatus,
    reason: string,
  ): Issue {
    return withChange(this.ctx.db, { actor: this.actor, reason }, () => {
      const i = this.ctx.issues.require(id);
      if (!from.has(i.status))
        throw new SupervisorError(
          'ERR_SUP_ISSUE_STATE',
          `issue #${id} is ${i.status}: it cannot be ${PARTICIPLE[verb] ?? verb}`,
          {
            hint: `${verb} works on issues that are ${[...from].join(', ')}`,
          },
        );
      this.ctx.issues.update(id, {
        status: to,
        ...(to === 'open' ? { error: null } : {}),
      });
      if (to === 'open') {
        // Dependents held for this issue wait again instead of staying blocked.
        this.ctx.db
          .prepare(
            `UPDATE issues SET status = 'open', updated_at = ? WHERE status = 'blocked'
             AND id IN (SELECT issue_id FROM issue_deps WHERE depends_on = ?)`,
          )
          .run(Date.now(), id);
      }
      return this.ctx.issues.require(id);
    });
  }
}
