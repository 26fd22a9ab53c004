import type { Db } from '../store/db.js';

export type LandingState =
  | 'started'
  | 'merged'
  | 'conflict'
  | 'check-failed'
  | 'interrupted'
  | 'refused';

/** One landing attempt of an issue (a row of `landings`). */
export interface Landing {
  id: number;
  issueId: number;
  attempt: number;
  state: LandingState;
  strategy: string;
  baseBranch: string;
  baseBefore: string | null;
  sourceSha: string | null;
  candidateSha: string | null;
  landedSha: string | null;
  conflictFiles: string[];
  checkLog: string | null;
  error: string | null;
  startedAt: number;
  finishedAt: number | null;
}

interface Row {
  id: number;
  issue_id: number;
  attempt: number;
  state: LandingState;
  strategy: string;
  base_branch: string;
  base_before: string | null;
  source_sha: string | null;
  candidate_sha: string | null;
  landed_sha: string | null;
  conflict_files: string | null;
  check_log: string | null;
  error: string | null;
  started_at: number;
  finished_at: number | null;
}

const toLanding = (r: Row): Landing => ({
  id: r.id,
  issueId: r.issue_id,
  attempt: r.attempt,
  state: r.state,
  strategy: r.strategy,
  baseBranch: r.base_branch,
  baseBefore: r.base_before,
  sourceSha: r.source_sha,
  candidateSha: r.candidate_sha,
  landedSha: r.landed_sha,
  conflictFiles: r.conflict_files
    ? (JSON.parse(r.conflict_files) as string[])
    : [],
  checkLog: r.check_log,
  error: r.error,
  startedAt: r.started_at,
  finishedAt: r.finished_at,
});

/** Landing attempts in SQLite; keyed by (issue, attempt), so a replayed step writes nothing new. */
export class LandingStore {
  constructor(
    private readonly db: Db,
    private readonly now: () => number = Date.now,
  ) {}

  start(l: {
    issueId: number;
    attempt: number;
    strategy: string;
    baseBranch: string;
    baseBefore: string;
    sourceSha: string;
  }): Landing {
    this.db
      .prepare(
        `INSERT INTO landings (issue_id, attempt, strategy, base_branch, base_before, source_sha, started_at)
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (issue_id, attempt) DO NOTHING`,
      )
      .run(
        l.issueId,
        l.attempt,
        l.strategy,
        l.baseBranch,
        l.baseBefore,
        l.sourceSha,
        this.now(),
      );
    return this.get(l.issueId, l.attempt)!;
  }

  /** The commit about to move the base: written before git moves it, so a restart can tell. */
  setCandidate(id: number, baseBefore: string, candidate: string): void {
    this.db
      .prepare(
        `UPDATE landings SET base_before = ?, candidate_sha = ? WHERE id = ? AND state = 'started'`,
      )
      .run(baseBefore, candidate, id);
  }

  finish(
    id: number,
    state: Exclude<LandingState, 'started'>,
    f: {
      landedSha?: string | null;
      conflictFiles?: string[];
      checkLog?: string | null;
      error?: string | null;
    } = {},
  ): void {
    this.db
      .prepare(
        `UPDATE landings SET state = ?, landed_sha = ?, conflict_files = ?, check_log = ?, error = ?, finished_at = ?
         WHERE id = ? AND state = 'started'`,
      )
      .run(
        state,
        f.landedSha ?? null,
        f.conflictFiles?.length ? JSON.stringify(f.conflictFiles) : null,
        f.checkLog ?? null,
        f.error ?? null,
        this.now(),
        id,
      );
  }

  get(issueId: number, attempt: number): Landing | undefined {
    const r = this.db
      .prepare(`SELECT * FROM landings WHERE issue_id = ? AND attempt = ?`)
      .get(issueId, attempt) as Row | undefined;
    return r ? toLanding(r) : undefined;
  }

  forIssue(issueId: number): Landing[] {
    return (
      this.db
        .prepare(`SELECT * FROM landings WHERE issue_id = ? ORDER BY attempt`)
        .all(issueId) as Row[]
    ).map(toLanding);
  }

  last(issueId: number): Landing | undefined {
    const r = this.db
      .prepare(
        `SELECT * FROM landings WHERE issue_id = ? ORDER BY attempt DESC LIMIT 1`,
      )
      .get(issueId) as Row | undefined;
    return r ? toLanding(r) : undefined;
  }

  unfinished(): Landing[] {
    return (
      this.db
        .prepare(`SELECT * FROM landings WHERE state = 'started' ORDER BY id`)
        .all() as Row[]
    ).map(toLanding);
  }
}
