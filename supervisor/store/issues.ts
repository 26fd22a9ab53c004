import {
  PRIORITIES,
  MAX_BODY_BYTES,
  MAX_TITLE_LENGTH,
  type Priority,
} from '../../contract/job.js';
import { SupervisorError } from '../errors.js';
import type { Statement } from 'better-sqlite3';
import type { Db } from './db.js';
import { LANDING_STATUSES } from './landing-schema.js';

export const ISSUE_STATUSES = LANDING_STATUSES;
export type IssueStatus = (typeof ISSUE_STATUSES)[number];

/** Statuses past the agent's work (the page's and the API's "recent results"). */
export const FINISHED_STATUSES: readonly IssueStatus[] = ISSUE_STATUSES.filter(
  (s) => s !== 'open' && s !== 'queued' && s !== 'in_progress',
);

/** Statuses an agent's late result or a claim never changes (the issue is settled or held). */
export const SETTLED_STATUSES: ReadonlySet<IssueStatus> = new Set([
  'done',
  'failed',
  'landing',
  'merged',
  'conflict',
  'check-failed',
  'cancelled',
  'blocked',
]);

export interface Issue {
  id: number;
  title: string;
  body: Buffer;
  priority: Priority;
  status: IssueStatus;
  agent: string | null;
  branch: string | null;
  commit: string | null;
  attempts: number;
  jobId: string | null;
  error: string | null;
  createdAt: number;
  updatedAt: number;
  /** The commit on the base branch that landed this issue (status merged). */
  landedSha: string | null;
  /** Landing attempts, counted apart from the agent's attempts. */
  landAttempts: number;
  /** Times a landing sent the issue back to an agent (conflict, failed check). */
  requeues: number;
  /** Commits on the base branch that the issue's commit lacks (done issues). */
  behind: number | null;
  /** Whether the issue's commit merges cleanly into the base tip (null: not known yet). */
  mergeable: boolean | null;
  /** Files that conflict with the base tip (or did at the last landing). */
  conflictFiles: string[];
  /** The base tip and the commit behind/mergeable were computed for. */
  checkedBase: string | null;
  checkedCommit: string | null;
}

export interface IssuePageQuery {
  /** Rows at most (-1: no limit). */
  limit: number;
  /** Newest first (the default: pages walk back in time) or oldest first. */
  order?: 'asc' | 'desc';
  status?: IssueStatus;
  /** Only issues with an id below this (the cursor: the last id of the previous page). */
  before?: number;
  /** Only issues updated at or after this time (ms since the epoch). */
  since?: number;
}

export interface NewIssue {
  title: string;
  body?: Buffer | string;
  priority?: string;
}

interface IssueRow {
  id: number;
  title: string;
  body: Buffer;
  priority: Priority;
  status: IssueStatus;
  agent: string | null;
  branch: string | null;
  commit_sha: string | null;
  attempts: number;
  job_id: string | null;
  error: string | null;
  created_at: number;
  updated_at: number;
  landed_sha: string | null;
  land_attempts: number;
  requeues: number;
  behind: number | null;
  mergeable: number | null;
  conflict_files: string | null;
  checked_base: string | null;
  checked_commit: string | null;
}

const toIssue = (r: IssueRow): Issue => ({
  id: r.id,
  title: r.title,
  body: Buffer.isBuffer(r.body) ? r.body : Buffer.from(String(r.body ?? '')),
  priority: r.priority,
  status: r.status,
  agent: r.agent,
  branch: r.branch,
  commit: r.commit_sha,
  attempts: r.attempts,
  jobId: r.job_id,
  error: r.error,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  landedSha: r.landed_sha,
  landAttempts: r.land_attempts,
  requeues: r.requeues,
  behind: r.behind,
  mergeable: r.mergeable === null ? null : r.mergeable === 1,
  conflictFiles: r.conflict_files
    ? (JSON.parse(r.conflict_files) as string[])
    : [],
  checkedBase: r.checked_base,
  checkedCommit: r.checked_commit,
});

export function validatePriority(p: string | undefined): Priority {
  const value = p ?? 'medium';
  if (!(PRIORITIES as readonly string[]).includes(value)) {
    throw new SupervisorError(
      'ERR_SUP_INVALID_ISSUE',
      `unknown priority "${value}"`,
      {
        hint: `use one of: ${PRIORITIES.join(', ')}`,
      },
    );
  }
  return value as Priority;
}

export function validateNewIssue(input: NewIssue): {
  title: string;
  body: Buffer;
  priority: Priority;
} {
  const title = (input.title ?? '').trim();
  if (title.length === 0) {
    throw new SupervisorError(
      'ERR_SUP_INVALID_ISSUE',
      'the issue title is empty',
      { hint: 'give a title, e.g. supervisor issue add "Fix login redirect"' },
    );
  }
  if (title.includes('\0')) {
    throw new SupervisorError(
      'ERR_SUP_INVALID_ISSUE',
      'the issue title contains a NUL byte',
      { hint: 'remove it; put binary material in the body (--body-file)' },
    );
  }
  if (title.length > MAX_TITLE_LENGTH) {
    throw new SupervisorError(
      'ERR_SUP_INVALID_ISSUE',
      `the issue title is ${title.length} characters long (at most ${MAX_TITLE_LENGTH})`,
      {
        hint: 'put the details in the body (--body or --body-file)',
      },
    );
  }
  const body = Buffer.isBuffer(input.body)
    ? input.body
    : Buffer.from(input.body ?? '', 'utf8');
  if (body.length > MAX_BODY_BYTES) {
    throw new SupervisorError(
      'ERR_SUP_INVALID_ISSUE',
      `the issue body is ${body.length} bytes (at most ${MAX_BODY_BYTES})`,
      {
        hint: 'link to large material instead of pasting it into the issue',
      },
    );
  }
  return { title, body, priority: validatePriority(input.priority) };
}

/** Issues in SQLite. Only the supervisor side opens this store. */
export class IssueStore {
  constructor(
    private readonly db: Db,
    private readonly now: () => number = Date.now,
  ) {}

  add(
    input: NewIssue,
    opts: { status?: IssueStatus; jobId?: string } = {},
  ): Issue {
    const v = validateNewIssue(input);
    const t = this.now();
    const info = this.db
      .prepare(
        'INSERT INTO issues (title, body, priority, status, job_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      )
      .run(
        v.title,
        v.body,
        v.priority,
        opts.status ?? 'open',
        opts.jobId ?? null,
        t,
        t,
      );
    return this.get(Number(info.lastInsertRowid))!;
  }

  /** Later issues get ids above `n` (a new database in a repository whose earlier issues still have jobs and branches). */
  skipIdsThrough(n: number): void {
    this.db.transaction(() => {
      const row = this.db
        .prepare(`SELECT seq FROM sqlite_sequence WHERE name = 'issues'`)
        .get() as { seq: number } | undefined;
      if (!row)
        this.db
          .prepare(
            `INSERT INTO sqlite_sequence (name, seq) VALUES ('issues', ?)`,
          )
          .run(n);
      else if (row.seq < n)
        this.db
          .prepare(`UPDATE sqlite_sequence SET seq = ? WHERE name = 'issues'`)
          .run(n);
    })();
  }

  /** Statements compiled once per store (the recorder and feeder ask per job and per batch). */
  private readonly statements = new Map<string, Statement>();
  private sql(text: string): Statement {
    let st = this.statements.get(text);
    if (!st) {
      st = this.db.prepare(text);
      this.statements.set(text, st);
    }
    return st;
  }

  get(id: number): Issue | undefined {
    const r = this.sql('SELECT * FROM issues WHERE id = ?').get(id) as
      IssueRow | undefined;
    return r ? toIssue(r) : undefined;
  }

  exists(id: number): boolean {
    return this.sql('SELECT 1 FROM issues WHERE id = ?').get(id) !== undefined;
  }

  require(id: number): Issue {
    const issue = this.get(id);
    if (!issue)
      throw new SupervisorError(
        'ERR_SUP_ISSUE_NOT_FOUND',
        `issue #${id} does not exist`,
        { hint: 'list issues with `supervisor issue list`' },
      );
    return issue;
  }

  byJobId(jobId: string): Issue | undefined {
    const r = this.sql('SELECT * FROM issues WHERE job_id = ?').get(jobId) as
      IssueRow | undefined;
    return r ? toIssue(r) : undefined;
  }

  list(filter: { status?: IssueStatus; limit?: number } = {}): Issue[] {
    const limit = filter.limit ?? -1;
    const rows = filter.status
      ? this.db
          .prepare(`SELECT * FROM issues WHERE status = ? ORDER BY id LIMIT ?`)
          .all(filter.status, limit)
      : this.db.prepare(`SELECT * FROM issues ORDER BY id LIMIT ?`).all(limit);
    return (rows as IssueRow[]).map(toIssue);
  }

  /**
   * One page of issues, newest first unless asked otherwise, read row by row (a caller can stream
   * them): `before` is the cursor (the last id of the previous page), `since` keeps issues updated
   * at or after a time.
   */
  *page(q: IssuePageQuery): Generator<Issue> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.status) {
      where.push('status = ?');
      args.push(q.status);
    }
    if (q.before !== undefined) {
      where.push('id < ?');
      args.push(q.before);
    }
    if (q.since !== undefined) {
      where.push('updated_at >= ?');
      args.push(q.since);
    }
    const sql = `SELECT * FROM issues${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY id ${q.order === 'asc' ? 'ASC' : 'DESC'} LIMIT ?`;
    for (const r of this.sql(sql).iterate(...args, q.limit))
      yield toIssue(r as IssueRow);
  }

  /**
   * Issues waiting for an agent, in the order the queue will hand them out: one index range per
   * (status, priority), merged, so the cost is the number shown, not the backlog.
   */
  pending(limit = 100): Issue[] {
    const parts: Issue[] = [];
    for (const status of ['open', 'queued'])
      for (const priority of PRIORITIES)
        for (const r of this.sql(
          'SELECT * FROM issues WHERE status = ? AND priority = ? ORDER BY id LIMIT ?',
        ).all(status, priority, limit) as IssueRow[])
          parts.push(toIssue(r));
    const rank = (p: Priority) => PRIORITIES.indexOf(p);
    return parts
      .sort((a, b) => rank(a.priority) - rank(b.priority) || a.id - b.id)
      .slice(0, limit);
  }

  /** The latest finished issues: one index range per status, merged (constant cost in history). */
  recentlyFinished(
    limit = 20,
    statuses: readonly IssueStatus[] = FINISHED_STATUSES,
  ): Issue[] {
    const parts: Issue[] = [];
    for (const status of statuses)
      for (const r of this.sql(
        'SELECT * FROM issues WHERE status = ? ORDER BY updated_at DESC, id DESC LIMIT ?',
      ).all(status, limit) as IssueRow[])
        parts.push(toIssue(r));
    return parts
      .sort((a, b) => b.updatedAt - a.updatedAt || b.id - a.id)
      .slice(0, limit);
  }

  /**
   * Done issues whose behind/mergeable were not computed against `tip` (or for their current
   * commit: a new commit clears checked_base, read-model.ts). Three ranges of one partial index,
   * so an up-to-date history costs nothing to ask about. The index is named: without statistics
   * SQLite prefers `status = 'done'` on issues_by_status_updated, which walks every done issue
   * (50 ms at 100k, once a second from the landing service).
   */
  staleMergeStates(tip: string, limit: number): Issue[] {
    const out: Issue[] = [];
    const where = `status = 'done' AND commit_sha IS NOT NULL AND`;
    for (const [cond, args] of [
      ['checked_base IS NULL', []],
      ['checked_base < ?', [tip]],
      ['checked_base > ?', [tip]],
    ] as const) {
      if (out.length >= limit) break;
      for (const r of this.sql(
        `SELECT * FROM issues INDEXED BY issues_merge_check
           WHERE ${where} ${cond} LIMIT ?`,
      ).all(...args, limit - out.length) as IssueRow[])
        out.push(toIssue(r));
    }
    return out;
  }

  /** When the longest-waiting issue (open, or queued and not yet claimed) started waiting. */
  oldestWaitingSince(): number | undefined {
    let oldest: number | undefined;
    for (const status of ['open', 'queued']) {
      const r = this.sql(
        'SELECT updated_at AS t FROM issues WHERE status = ? ORDER BY updated_at LIMIT 1',
      ).get(status) as { t: number } | undefined;
      if (r && (oldest === undefined || r.t < oldest)) oldest = r.t;
    }
    return oldest;
  }

  /** Open issues in id order, after `afterId` (a feeder walking batches while the last is in flight). */
  openBatch(limit: number, afterId = 0): Issue[] {
    const rows = this.sql(
      `SELECT * FROM issues WHERE status = 'open' AND id > ? ORDER BY id LIMIT ?`,
    ).all(afterId, limit) as IssueRow[];
    return rows.map(toIssue);
  }

  /**
   * Marks issues as fed into the queue under their job ids, in one transaction: open ones become
   * queued; one a runner's claim already moved on (the claim was recorded first, e.g. after the
   * supervisor died between adding and marking) gets its job id all the same, so the vanished-job
   * reconcile still sees it.
   */
  markQueued(entries: ReadonlyArray<{ id: number; jobId: string }>): void {
    const stmt = this.sql(
      `UPDATE issues SET status = CASE WHEN status = 'open' THEN 'queued' ELSE status END,
         job_id = ?, updated_at = ?
       WHERE id = ? AND (status = 'open' OR (status IN ('queued','in_progress') AND job_id IS NULL))`,
    );
    const t = this.now();
    this.db.transaction(() => {
      for (const e of entries) stmt.run(e.jobId, t, e.id);
    })();
  }

  /**
   * The issue/job-id invariant: an issue that is queued or in progress has a job id. Repairs
   * rows that broke it (our issues' job ids follow from their ids) and returns their ids.
   */
  repairMissingJobIds(): number[] {
    return this.db.transaction(() => {
      const ids = (
        this.sql(
          `SELECT id FROM issues WHERE status IN ('queued','in_progress') AND job_id IS NULL`,
        ).all() as Array<{ id: number }>
      ).map((r) => r.id);
      const fix = this.sql(
        `UPDATE issues SET job_id = 'issue-' || id, updated_at = ? WHERE id = ? AND job_id IS NULL`,
      );
      const t = this.now();
      for (const id of ids) fix.run(t, id);
      return ids;
    })();
  }

  /** Sets the job id of an issue that has none (a claim recorded before the feeder's mark). */
  setJobIdIfMissing(id: number, jobId: string): void {
    this.sql(
      `UPDATE issues SET job_id = ? WHERE id = ? AND job_id IS NULL`,
    ).run(jobId, id);
  }

  /**
   * Issues that should have a live job in the queue (queued, in progress, with a job id), a page
   * of them in id order after `afterId`: two ranges of `issues_by_status`, so a page costs the
   * same whatever the backlog (the reconcile walks the backlog a page per round).
   */
  liveJobPage(
    afterId: number,
    limit: number,
  ): Array<{ id: number; jobId: string }> {
    const out: Array<{ id: number; jobId: string }> = [];
    for (const status of ['queued', 'in_progress'] as const)
      out.push(
        ...(this.sql(
          `SELECT id, job_id AS jobId FROM issues
           WHERE status = ? AND id > ? AND job_id IS NOT NULL ORDER BY id LIMIT ?`,
        ).all(status, afterId, limit) as Array<{ id: number; jobId: string }>),
      );
    return out.sort((a, b) => a.id - b.id).slice(0, limit);
  }

  update(
    id: number,
    fields: Partial<
      Pick<
        Issue,
        | 'status'
        | 'agent'
        | 'branch'
        | 'commit'
        | 'attempts'
        | 'error'
        | 'landedSha'
        | 'landAttempts'
        | 'requeues'
        | 'behind'
        | 'mergeable'
        | 'conflictFiles'
        | 'checkedBase'
        | 'checkedCommit'
      >
    >,
    /** touch: false keeps updated_at (derived fields such as behind/mergeable are not news). */
    opts: { touch?: boolean } = {},
  ): void {
    const cols: string[] = [];
    const vals: unknown[] = [];
    const map: Record<string, string> = {
      status: 'status',
      agent: 'agent',
      branch: 'branch',
      commit: 'commit_sha',
      attempts: 'attempts',
      error: 'error',
      landedSha: 'landed_sha',
      landAttempts: 'land_attempts',
      requeues: 'requeues',
      behind: 'behind',
      mergeable: 'mergeable',
      conflictFiles: 'conflict_files',
      checkedBase: 'checked_base',
      checkedCommit: 'checked_commit',
    };
    for (const [k, v] of Object.entries(fields)) {
      if (v === undefined) continue;
      cols.push(`${map[k]} = ?`);
      vals.push(
        k === 'mergeable' && v !== null
          ? v
            ? 1
            : 0
          : k === 'conflictFiles'
            ? JSON.stringify(v)
            : v,
      );
    }
    if (cols.length === 0) return;
    if (opts.touch !== false) {
      cols.push('updated_at = ?');
      vals.push(this.now());
    }
    vals.push(id);
    this.sql(`UPDATE issues SET ${cols.join(', ')} WHERE id = ?`).run(...vals);
  }

  /** Issues by status, from the aggregate the triggers keep (read-model.ts): a few rows, not a scan. */
  counts(): Record<IssueStatus, number> {
    const out = Object.fromEntries(ISSUE_STATUSES.map((s) => [s, 0])) as Record<
      IssueStatus,
      number
    >;
    for (const r of this.sql(
      'SELECT status, n FROM issue_counts WHERE n <> 0',
    ).all() as Array<{ status: IssueStatus; n: number }>) {
      out[r.status] = r.n;
    }
    return out;
  }
}
