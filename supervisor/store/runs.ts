import type { Statement } from 'better-sqlite3';
import type { AgentUsage } from '../../contract/job.js';
import type { Db } from './db.js';

export const RUN_OUTCOMES = [
  'running',
  'succeeded',
  'failed',
  'lost',
  'released',
] as const;
export type RunOutcome = (typeof RUN_OUTCOMES)[number];

export interface Run {
  id: number;
  issueId: number;
  jobId: string;
  attempt: number;
  agent: string | null;
  startedAt: number | null;
  finishedAt: number | null;
  outcome: RunOutcome;
  exitCode: number | null;
  baseSha: string | null;
  commitSha: string | null;
  filesChanged: number | null;
  insertions: number | null;
  deletions: number | null;
  durationMs: number | null;
  logPath: string | null;
  error: string | null;
  /** Why the attempt failed or was lost, as a stable code (`ATTEMPT_FAILURE_KINDS`). */
  errorKind: string | null;
  /** Tokens and cost of the run (null: the agent printed none; docs/agents.md). */
  costUsd: number | null;
  /** `reported` by the agent, or computed from the price table (`prices`). */
  costSource: 'reported' | 'prices' | null;
  inputTokens: number | null;
  outputTokens: number | null;
  cacheReadTokens: number | null;
  cacheWriteTokens: number | null;
  model: string | null;
  turns: number | null;
}

export interface RunFields {
  agent?: string | null;
  startedAt?: number | null;
  finishedAt?: number | null;
  outcome?: RunOutcome;
  exitCode?: number | null;
  baseSha?: string | null;
  commitSha?: string | null;
  filesChanged?: number | null;
  insertions?: number | null;
  deletions?: number | null;
  durationMs?: number | null;
  logPath?: string | null;
  error?: string | null;
  errorKind?: string | null;
  costUsd?: number | null;
  costSource?: 'reported' | 'prices' | null;
  inputTokens?: number | null;
  outputTokens?: number | null;
  cacheReadTokens?: number | null;
  cacheWriteTokens?: number | null;
  model?: string | null;
  turns?: number | null;
}

const COLUMNS: Record<keyof RunFields, string> = {
  agent: 'agent',
  startedAt: 'started_at',
  finishedAt: 'finished_at',
  outcome: 'outcome',
  exitCode: 'exit_code',
  baseSha: 'base_sha',
  commitSha: 'commit_sha',
  filesChanged: 'files_changed',
  insertions: 'insertions',
  deletions: 'deletions',
  durationMs: 'duration_ms',
  logPath: 'log_path',
  error: 'error',
  errorKind: 'error_kind',
  costUsd: 'cost_usd',
  costSource: 'cost_source',
  inputTokens: 'input_tokens',
  outputTokens: 'output_tokens',
  cacheReadTokens: 'cache_read_tokens',
  cacheWriteTokens: 'cache_write_tokens',
  model: 'model',
  turns: 'turns',
};

const SELECT = `SELECT id, issue_id AS issueId, job_id AS jobId, attempt, agent, started_at AS startedAt,
  finished_at AS finishedAt, outcome, exit_code AS exitCode, base_sha AS baseSha, commit_sha AS commitSha,
  files_changed AS filesChanged, insertions, deletions, duration_ms AS durationMs, log_path AS logPath, error, error_kind AS errorKind,
  cost_usd AS costUsd, cost_source AS costSource, input_tokens AS inputTokens, output_tokens AS outputTokens, cache_read_tokens AS cacheReadTokens,
  cache_write_tokens AS cacheWriteTokens, model, turns FROM runs`;

/** The run columns of an agent's usage (job result or failed attempt). */
export function usageFields(u: AgentUsage | undefined): RunFields {
  if (!u) return {};
  return {
    costUsd: u.costUsd ?? null,
    costSource: u.costSource ?? (u.costUsd !== undefined ? 'reported' : null),
    inputTokens: u.inputTokens,
    outputTokens: u.outputTokens,
    cacheReadTokens: u.cacheReadTokens,
    cacheWriteTokens: u.cacheWriteTokens,
    model: u.model ?? null,
    turns: u.turns ?? null,
  };
}

/** One row per attempt, keyed by (job id, attempt) so every write is idempotent. */
export class RunStore {
  constructor(private readonly db: Db) {}

  /** Statements compiled once per store: the recorder writes a few per job. */
  private readonly statements = new Map<string, Statement>();
  private sql(text: string): Statement {
    let st = this.statements.get(text);
    if (!st) {
      st = this.db.prepare(text);
      this.statements.set(text, st);
    }
    return st;
  }

  get(jobId: string, attempt: number): Run | undefined {
    return this.sql(`${SELECT} WHERE job_id = ? AND attempt = ?`).get(
      jobId,
      attempt,
    ) as Run | undefined;
  }

  /**
   * Creates or updates the run of (jobId, attempt). A run that reached a final outcome is
   * never moved to another one: a late report cannot rewrite history.
   */
  upsert(
    issueId: number,
    jobId: string,
    attempt: number,
    fields: RunFields,
  ): { changed: boolean } {
    const existing = this.get(jobId, attempt);
    if (!existing) {
      const keys = Object.keys(fields).filter(
        (k) => fields[k as keyof RunFields] !== undefined,
      ) as Array<keyof RunFields>;
      const cols = [
        'issue_id',
        'job_id',
        'attempt',
        ...keys.map((k) => COLUMNS[k]),
      ];
      const vals = [issueId, jobId, attempt, ...keys.map((k) => fields[k])];
      this.sql(
        `INSERT INTO runs (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`,
      ).run(...vals);
      return { changed: true };
    }
    if (
      existing.outcome !== 'running' &&
      fields.outcome !== undefined &&
      fields.outcome !== existing.outcome
    ) {
      return { changed: false };
    }
    const sets: string[] = [];
    const vals: unknown[] = [];
    for (const [k, v] of Object.entries(fields)) {
      if (v === undefined) continue;
      // Fill in, never overwrite what an earlier report of the same attempt recorded.
      const col = COLUMNS[k as keyof RunFields];
      if (k === 'outcome') sets.push(`${col} = ?`);
      else sets.push(`${col} = COALESCE(${col}, ?)`);
      vals.push(v);
    }
    if (sets.length === 0) return { changed: false };
    this.sql(`UPDATE runs SET ${sets.join(', ')} WHERE id = ?`).run(
      ...vals,
      existing.id,
    );
    return { changed: true };
  }

  /**
   * A failed attempt is reported by its runner (why: `disk`, `no-progress`, …) and by BullMQ's
   * `failed` event for the job, read from different streams: when BullMQ's was recorded first,
   * its generic `job-failed` gives way to the runner's kind (the one exception to "the first
   * report of a field wins").
   */
  refineJobFailed(jobId: string, attempt: number, errorKind: string): void {
    this.sql(
      `UPDATE runs SET error_kind = ? WHERE job_id = ? AND attempt = ? AND outcome = 'failed' AND error_kind = 'job-failed'`,
    ).run(errorKind, jobId, attempt);
  }

  /**
   * The highest attempt number taken for each issue: recorded in a run, or reserved by
   * `reserveAttempts`; issues with neither are left out. The feeder numbers a new job's
   * attempts after it (job data `attemptOffset`).
   */
  maxAttempts(issueIds: readonly number[]): Map<number, number> {
    const rows = this.db
      .prepare(
        `SELECT j.value AS id, MAX(
           COALESCE((SELECT MAX(attempt) FROM runs WHERE issue_id = j.value), 0),
           COALESCE((SELECT CAST(value AS INTEGER) FROM settings WHERE key = 'attempt_floor:' || j.value), 0)
         ) AS m
         FROM json_each(?) AS j`,
      )
      .all(JSON.stringify(issueIds)) as Array<{ id: number; m: number }>;
    return new Map(rows.filter((r) => r.m > 0).map((r) => [r.id, r.m]));
  }

  /**
   * Takes attempt numbers up to `upTo` for an issue without recording runs: after Redis lost an
   * issue's job, a runner may still hold one of its attempts whose claim was lost with the event
   * stream, so the replacing job's attempts must be numbered past any it could report.
   */
  reserveAttempts(issueId: number, upTo: number): void {
    this.db
      .prepare(
        `INSERT INTO settings (key, value) VALUES ('attempt_floor:' || CAST(? AS INTEGER), ?)
         ON CONFLICT (key) DO UPDATE SET value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))`,
      )
      .run(issueId, String(upTo));
  }

  forIssue(issueId: number): Run[] {
    return this.sql(`${SELECT} WHERE issue_id = ? ORDER BY attempt, id`).all(
      issueId,
    ) as Run[];
  }

  running(jobId?: string): Run[] {
    return (
      jobId
        ? this.sql(`${SELECT} WHERE outcome = 'running' AND job_id = ?`).all(
            jobId,
          )
        : this.sql(`${SELECT} WHERE outcome = 'running'`).all()
    ) as Run[];
  }

  /** Runs by outcome: the finished ones from the kept aggregate (read-model.ts), the running by index. */
  countByOutcome(): Record<RunOutcome, number> {
    const out = Object.fromEntries(RUN_OUTCOMES.map((o) => [o, 0])) as Record<
      RunOutcome,
      number
    >;
    for (const r of this.sql(
      'SELECT outcome, n FROM run_totals',
    ).all() as Array<{
      outcome: RunOutcome;
      n: number;
    }>) {
      out[r.outcome] = r.n;
    }
    out.running = (
      this.sql(
        `SELECT COUNT(*) AS n FROM runs WHERE outcome = 'running'`,
      ).get() as { n: number }
    ).n;
    return out;
  }
}
