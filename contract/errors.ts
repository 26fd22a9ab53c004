/**
 * Error codes shared by the supervisor, the runner and the dashboard: one error type with a
 * stable code, a message, a hint and a cause, and the kinds of attempt failures. Interfaces
 * match on codes and kinds, never on message text.
 */
import { z } from 'zod';

/** Stable codes of `SupervisorError`. Append new ones; never rename or reuse one. */
export const ERROR_CODES = [
  'ERR_SUP_USAGE',
  'ERR_SUP_NOT_A_REPO',
  'ERR_SUP_EMPTY_REPO',
  'ERR_SUP_NOT_INITIALISED',
  'ERR_SUP_CONFIG',
  'ERR_SUP_REDIS_UNREACHABLE',
  'ERR_SUP_ALREADY_RUNNING',
  'ERR_SUP_NOT_RUNNING',
  'ERR_SUP_ISSUE_NOT_FOUND',
  'ERR_SUP_INVALID_ISSUE',
  'ERR_SUP_SCALE_LIMIT',
  'ERR_SUP_DATABASE',
  'ERR_SUP_GIT',
  'ERR_SUP_ENV_EXHAUSTED',
  'ERR_SUP_POSTGRES',
  'ERR_SUP_DOCKER',
  'ERR_SUP_TIMEOUT',
  'ERR_SUP_LAND_REFUSED',
  'ERR_SUP_LAND_BUSY',
  'ERR_SUP_ISSUE_STATE',
  'ERR_SUP_AGENT_MISSING',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export class SupervisorError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { hint?: string; cause?: unknown } = {},
  ) {
    super(
      redactSecrets(message),
      opts.cause === undefined ? undefined : { cause: opts.cause },
    );
    this.name = 'SupervisorError';
    this.code = code;
    this.hint = opts.hint === undefined ? undefined : redactSecrets(opts.hint);
  }
}

/** Anything thrown, as an Error (done once, where it is caught). */
export function coerceError(err: unknown): Error {
  if (err instanceof Error) return err;
  return new Error(typeof err === 'string' ? err : JSON.stringify(err));
}

/** Strips passwords from every URL in a text: `redis://:secret@h` → `redis://:***@h`. */
export function redactSecrets(text: string): string {
  // Bounded scheme length: unbounded, the pattern backtracks quadratically on long tokens.
  return text.replace(
    /\b([a-z][a-z0-9+.-]{0,30}:\/\/)([^/\s:@]{0,256}):([^@\s/]{1,1024})@/gi,
    '$1$2:***@',
  );
}

/**
 * Why an attempt failed, as a stable code: stored with the run, sent in the runner's
 * `attempt-failed` event, matched by the dashboard and the CLI. An extensible enum: append kinds
 * here (e.g. usage limits, budgets, broken slots); readers treat a kind they do not know as
 * `runner-error`, and the event schema accepts any well-formed kind so that an older supervisor
 * never drops a newer runner's event.
 */
export const ATTEMPT_FAILURE_KINDS = [
  /** The agent exited non-zero (or was killed by a signal it did not get from us). */
  'agent-exit',
  /** The agent command was not found (exit 127). */
  'agent-not-found',
  /** The agent command could not be started at all. */
  'agent-spawn',
  /** No output and no file change for the progress timeout: the agent was killed. */
  'no-progress',
  /** The kernel killed the agent for memory. */
  'out-of-memory',
  /** A before-job step (e.g. resetting the slot's database) failed. */
  'before-job',
  /** The runner itself failed (git, disk, its own bug): not the agent's fault. */
  'runner-error',
  /** The runner lost its lock; its result is refused. */
  'lease-lost',
  /** Another attempt of the same job was claimed or completed. */
  'superseded',
  /** The runner stopped renewing its lock (dead or frozen); BullMQ requeued the job. */
  'stalled',
  /** The job vanished from Redis (data loss); the issue is fed again. */
  'vanished',
  /** A completed job's result did not match the job contract. */
  'invalid-result',
  /** A completed job's result could not be published (missing or wrong result ref or commit). */
  'result-refused',
  /** BullMQ failed the job (attempts exhausted, invalid job data, stalled too often). */
  'job-failed',
  /**
   * A provider usage limit (or exit 75 / $AGENT_STATUS_FILE): the attempt is handed back unspent
   * and the pool pauses (docs/agents.md); recorded as the run's release, not as a failure.
   */
  'usage-limit',
  /** The agent's program is not installed: the attempt is handed back and the slot blocks. */
  'missing-program',
  /** The agent's files passed diskPerAgent: it was stopped. */
  'disk',
  /** Reserved (issue 12, not emitted yet): the attempt passed budget.perIssue. */
  'budget',
  /**
   * The slot is broken (its worktree cannot be prepared even after a repair): the job was handed
   * back unspent (a `release` with this kind) and the runner exits with `EXIT_SLOT_BROKEN`.
   */
  'slot-broken',
  /** Runners kept dying while holding this job (`poisonAfter` times): failed for good. */
  'poison',
] as const;
export type AttemptFailureKind = (typeof ATTEMPT_FAILURE_KINDS)[number];

/** Any well-formed kind (also ones this version does not know yet). */
export const AttemptFailureKindSchema = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,40}$/);

export function isKnownFailureKind(k: string): k is AttemptFailureKind {
  return (ATTEMPT_FAILURE_KINDS as readonly string[]).includes(k);
}

/** A failed attempt, with its kind; `reported` once the runner published it as an event. */
export class AttemptError extends Error {
  constructor(
    readonly kind: AttemptFailureKind,
    message: string,
    readonly reported = false,
  ) {
    super(message);
    this.name = 'AttemptError';
  }
}

/**
 * Exit code of a runner whose slot is broken (EX_CONFIG): it handed its job back unspent; the
 * supervisor re-creates the slot's worktree and environment, and quarantines a slot that stays
 * broken (docs/agents.md, "Slot health").
 */
export const EXIT_SLOT_BROKEN = 78;
