import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { supervisorKeys } from '../../contract/job.js';
import type { ResultRefs } from '../results.js';
import type { Db } from '../store/db.js';
import type { Issue, IssueStore } from '../store/issues.js';
import type { Run, RunStore } from '../store/runs.js';

export interface RecorderEvents {
  /** An issue reached done or failed. */
  result: [{ issue: Issue; run: Run | undefined }];
  /** A run was superseded (re-claimed elsewhere) or its lease was lost. */
  lost: [{ run: Run; reason: string }];
  warning: [string];
}

export interface RecorderOptions {
  db: Db;
  issues: IssueStore;
  runs: RunStore;
  queue: Queue;
  /** Connection for reads (job state, zsets); a blocking one is duplicated from it. */
  redis: Redis;
  prefix: string;
  repoRoot: string;
  /** Where the repository's refs are (a linked worktree's common directory); `<repoRoot>/.git`. */
  gitCommonDir?: string;
  /** @defaultValue 256 — `git pack-refs` after this many branch writes (`git/ref-packer.ts`). */
  packRefsEvery?: number;
  reconcileIntervalMs: number;
  /** @defaultValue 300000 — one handler that takes longer no longer holds up the others. */
  handlerDeadlineMs?: number;
  /** Kills the agent of a superseded attempt if it still runs (frozen runner). */
  killAgent: (
    agentId: string,
    match: { jobId: string; attempt: number },
  ) => Promise<boolean>;
  log: (msg: string, fields?: Record<string, unknown>) => void;
  /** Result refs of remote runners (fetched, checked, published as issue branches, deleted). */
  results?: ResultRefs;
}

/** Counters for metrics. */
export interface RecorderStats {
  leaseLosses: number;
  superseded: number;
  refed: number;
  adopted: number;
  refusedResults: number;
  /** Agents killed for no progress (attempt-failed with kind no-progress). */
  timeouts: number;
  /** Agents the kernel killed for memory (kind out-of-memory). */
  oomKills: number;
}

/** What the recorder's parts share: its options, counters, keys and outward events. */
export interface RecorderContext {
  readonly o: RecorderOptions;
  readonly stats: RecorderStats;
  readonly keys: ReturnType<typeof supervisorKeys>;
  /** An issue reached done or failed (emits `result`). */
  finished(issueId: number, jobId: string, attempt: number | undefined): void;
  warn(message: string): void;
  /** A running attempt was replaced: kill its agent if it still runs, emit `lost`. */
  supersede(run: Run, reason: string): Promise<void>;
}
