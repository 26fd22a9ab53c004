/**
 * The job contract shared by the supervisor and the agent-runner, and public for
 * any other producer that adds issues with plain BullMQ. Nothing else is shared
 * between the two sides.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { PriceTableSchema } from './prices.js';
import { AttemptFailureKindSchema } from './errors.js';

export const PRIORITIES = ['urgent', 'high', 'medium', 'low'] as const;
export type Priority = (typeof PRIORITIES)[number];

/** BullMQ priority for an issue priority (1 is taken first). */
export const BULL_PRIORITY: Readonly<Record<Priority, number>> = Object.freeze({
  urgent: 1,
  high: 2,
  medium: 3,
  low: 4,
});

export const MAX_TITLE_LENGTH = 1000;
/** Bodies up to 4 MiB travel in the job; larger ones are refused at the door. */
export const MAX_BODY_BYTES = 4 * 1024 * 1024;

/** Why a landing sent an issue back to an agent (job data `landing`). */
export const LandingFeedbackSchema = z
  .object({
    reason: z.enum(['conflict', 'check-failed']),
    /** The commit of the earlier result (branch issue/<id> stays there until a new one lands). */
    previousResultSha: z.string().regex(/^[0-9a-f]{40,64}$/),
    baseBranch: z.string().max(255),
    conflictFiles: z.array(z.string().max(4096)).max(1000).default([]),
    /** The last lines of land.check's output. */
    checkLog: z
      .string()
      .max(32 * 1024)
      .default(''),
    /** Landing attempts so far (counted apart from the agent's attempts). */
    landAttempt: z.number().int().positive(),
  })
  .strict();
export type LandingFeedback = z.output<typeof LandingFeedbackSchema>;

/**
 * Job data. `issueId` is set by our feeder; a foreign producer may leave it out, and
 * the recorder then creates an issue row for the job on first sight (a foreign producer's
 * `issueId` is ignored: the job runs as the issue it was adopted as, see `supervisorKeys().adopted`).
 * `body` is UTF-8 text, or base64 of raw bytes when `bodyEncoding` is `base64`
 * (bodies that are not valid UTF-8 reach the agent byte-exact that way).
 */
export const JobDataSchema = z
  .object({
    issueId: z.number().int().positive().optional(),
    title: z
      .string()
      .trim()
      .min(1, 'title must not be empty')
      .max(MAX_TITLE_LENGTH)
      // The title reaches the agent as ISSUE_TITLE, and an environment variable cannot hold NUL.
      .refine((t) => !t.includes('\0'), 'title must not contain NUL bytes'),
    body: z
      .string()
      .max(Math.ceil((MAX_BODY_BYTES * 4) / 3) + 4)
      .default(''),
    bodyEncoding: z.enum(['utf8', 'base64']).default('utf8'),
    priority: z.enum(PRIORITIES).default('medium'),
    /**
     * Attempts already spent on this issue by earlier jobs (set when an issue is fed again
     * after Redis lost its data), so attempt numbers stay unique per issue.
     */
    attemptOffset: z.number().int().nonnegative().default(0),
    /**
     * Set when a landing sent the issue back (a conflict with the base, or a failed land.check):
     * what the agent needs to do better this time. The runner passes it as PREVIOUS_RESULT_SHA,
     * LAND_CONFLICT_FILES / LAND_CHECK_LOG and a section of the prompt file.
     */
    landing: LandingFeedbackSchema.optional(),
  })
  .strict();
export type JobData = z.output<typeof JobDataSchema>;
export type JobDataInput = z.input<typeof JobDataSchema>;

/** Tokens, cost, model and turns of one agent run, as the agent reported them. */
export const AgentUsageSchema = z.object({
  /** USD: as the agent reported it (Claude Code's total_cost_usd), else at the price table. */
  costUsd: z.number().nonnegative().optional(),
  /** Where `costUsd` comes from: the agent's report, or the price table (contract/prices.ts). */
  costSource: z.enum(['reported', 'prices']).optional(),
  /** Input tokens neither read from nor written to the cache. */
  inputTokens: z.number().int().nonnegative(),
  outputTokens: z.number().int().nonnegative(),
  cacheReadTokens: z.number().int().nonnegative(),
  cacheWriteTokens: z.number().int().nonnegative(),
  model: z.string().max(200).optional(),
  turns: z.number().int().nonnegative().optional(),
});
export type AgentUsage = z.infer<typeof AgentUsageSchema>;

/** What a runner returns for a finished agent run (BullMQ `returnvalue`). */
export const JobResultSchema = z.object({
  agentId: z.string(),
  attempt: z.number().int().nonnegative(),
  exitCode: z.number().int(),
  baseSha: z.string(),
  commitSha: z.string().nullable(),
  filesChanged: z.number().int().nonnegative(),
  insertions: z.number().int().nonnegative(),
  deletions: z.number().int().nonnegative(),
  durationMs: z.number().nonnegative(),
  logPath: z.string(),
  startedAt: z.number(),
  finishedAt: z.number(),
  /** Set when the agent succeeded but its run log could not be written in full (disk full). */
  logError: z.string().optional(),
  /**
   * Remote mode: the ref the runner pushed its commit to (`resultRefFor(jobId, attempt)`); the
   * recorder fetches it, checks it is `commitSha`, publishes `issue/<id>` and deletes it.
   */
  resultRef: z.string().optional(),
  /** Tokens and cost the agent reported (stream-json / exec --json); absent when it printed none. */
  usage: AgentUsageSchema.optional(),
});
export type JobResult = z.infer<typeof JobResultSchema>;

/** Events a runner publishes to the supervisor's event stream (claims and releases). */
export const RunnerEventSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('claim'),
    jobId: z.string(),
    attempt: z.number().int(),
    agentId: z.string(),
    at: z.number(),
    logPath: z.string(),
    baseSha: z.string().optional(),
    agentPid: z.number().int().optional(),
  }),
  z.object({
    type: z.literal('release'),
    jobId: z.string(),
    attempt: z.number().int(),
    agentId: z.string(),
    at: z.number(),
    reason: z.string(),
    /** Why the slot gave it back when that is a failure of the slot's (e.g. `slot-broken`). */
    kind: AttemptFailureKindSchema.optional(),
  }),
  z.object({
    type: z.literal('attempt-failed'),
    jobId: z.string(),
    attempt: z.number().int(),
    agentId: z.string(),
    at: z.number(),
    error: z.string(),
    /** Why, as a stable code (`ATTEMPT_FAILURE_KINDS`); absent from runners before it existed. */
    kind: AttemptFailureKindSchema.optional(),
    exitCode: z.number().int().nullable(),
    baseSha: z.string().optional(),
    logPath: z.string().optional(),
    /**
     * What the failing agent changed, committed on its slot branch (shared git mode); the
     * supervisor keeps it as `refs/supervisor/attempts/<issue>/<attempt>` for a reviewer.
     */
    work: z
      .object({
        commitSha: z.string().regex(/^[0-9a-f]{40}(?:[0-9a-f]{24})?$/),
        filesChanged: z.number().int(),
        insertions: z.number().int(),
        deletions: z.number().int(),
      })
      .optional(),
    /** Tokens and cost of the failed run, when the agent printed any (they were spent too). */
    usage: AgentUsageSchema.optional(),
  }),
  z.object({
    /**
     * The agent ran into a provider usage limit (or asked to retry later): its attempt was handed
     * back unspent and claiming is paused until `until` (the reset plus the configured margin).
     */
    type: z.literal('usage-limit'),
    jobId: z.string(),
    attempt: z.number().int(),
    agentId: z.string(),
    at: z.number(),
    provider: z.string(),
    until: z.number(),
    /** The reset time the agent reported, when it reported one. */
    resetAt: z.number().optional(),
    reason: z.string(),
    source: z.string(),
    logPath: z.string().optional(),
  }),
  z.object({
    type: z.literal('lease-lost'),
    jobId: z.string(),
    attempt: z.number().int(),
    agentId: z.string(),
    at: z.number(),
  }),
]);
export type RunnerEvent = z.infer<typeof RunnerEventSchema>;

/** Lease settings: the BullMQ lock is the runner's lease, the progress timeout the agent's. */
export const LeaseSchema = z.object({
  /**
   * @defaultValue 20000 — lock held by a live runner, renewed every 10 s (half of it). With the
   * 5 s stalled check, a runner whose host is gone loses its job in ≤ 25 s; a live runner keeps
   * it for as long as its agent works (renewal does not depend on the agent), and rides out
   * Redis or network gaps of 10–20 s (docs/reliability.md).
   */
  lockDurationMs: z.number().int().min(200).default(20_000),
  /** @defaultValue 5000 — how often each runner looks for stalled (unrenewed) jobs (one script). */
  stalledIntervalMs: z.number().int().min(100).default(5_000),
  /** @defaultValue 2 — stalls tolerated before a job fails. */
  maxStalledCount: z.number().int().min(2).default(2),
  /** @defaultValue 900000 — an agent with no output and no file change for this long is killed. */
  progressTimeoutMs: z
    .number()
    .int()
    .min(100)
    .default(15 * 60_000),
  /** @defaultValue 5000 — SIGTERM to the agent's group, then SIGKILL after this long. */
  killGraceMs: z.number().int().min(0).default(5_000),
});
export type Lease = z.infer<typeof LeaseSchema>;

/**
 * A command the runner runs after it claimed a job and before the agent starts (e.g. recreate
 * the slot's database for `env.postgres.resetPerIssue`). argv, no shell; non-zero fails the attempt.
 */
export const BeforeJobStepSchema = z.object({
  name: z.string().min(1),
  command: z.array(z.string()).min(1),
  env: z.record(z.string()).default({}),
  /** @defaultValue 120000 */
  timeoutMs: z.number().int().positive().default(120_000),
});
export type BeforeJobStep = z.input<typeof BeforeJobStepSchema>;

/**
 * The runner's git access. `shared` (default): a worktree of the supervisor's repository at
 * `repoPath`, on the same filesystem. `remote`: the runner keeps its own clone under `cacheDir`,
 * fetched from `url`, and pushes each result commit to a `refs/supervisor/results/…` ref at
 * `pushUrl` (default `url`). Credentials: the file `credentialsFile` or the environment variable
 * SUPERVISOR_GIT_TOKEN, holding a token (sent as a Bearer header) or `user:password` (Basic);
 * they never appear in logs, errors or status.
 */
export const RunnerGitSchema = z.discriminatedUnion('mode', [
  z.object({ mode: z.literal('shared') }),
  z.object({
    mode: z.literal('remote'),
    url: z.string().min(1),
    pushUrl: z.string().min(1).optional(),
    cacheDir: z.string().min(1),
    credentialsFile: z.string().min(1).optional(),
    /** @defaultValue 600000 — a fetch or push that takes longer is killed (the remote counts as unreachable). */
    timeoutMs: z.number().int().min(100).default(600_000),
  }),
]);
export type RunnerGit = z.infer<typeof RunnerGitSchema>;

/** What a runner does when its agent reports a provider usage limit (docs/agents.md). */
export const RunnerLimitsSchema = z.object({
  /** @defaultValue 60000 — added to the reset time the provider gave. */
  marginMs: z.number().int().min(0).default(60_000),
  /** @defaultValue 300000 — pause when the agent said no reset time (exit 75, a bare 429). */
  defaultPauseMs: z.number().int().min(1).default(300_000),
  /** @defaultValue 604800000 — a reset further away than this is cut to it (7 days). */
  maxPauseMs: z
    .number()
    .int()
    .min(1)
    .default(7 * 86_400_000),
  /** diskPerAgent: past it (worktree, and in a container HOME and /var/tmp) the agent is stopped. */
  diskBytes: z.number().int().min(1).optional(),
  /** @defaultValue 5000 — how often the agent's disk use is measured while it runs. */
  diskCheckMs: z.number().int().min(50).default(5000),
});
export type RunnerLimits = z.infer<typeof RunnerLimitsSchema>;

export const AgentUserSchema = z.object({
  uid: z.number().int().min(1),
  gid: z.number().int().min(0),
});
export type AgentUser = z.infer<typeof AgentUserSchema>;

export const RunnerConfigSchema = z.object({
  agentId: z.string().regex(/^agent-\d{3}$/),
  host: z.string().default('local'),
  redisUrl: z.string(),
  prefix: z.string(),
  queueName: z.string(),
  repoPath: z.string(),
  worktreePath: z.string(),
  branch: z.string(),
  baseBranch: z.string(),
  agentCommand: z.string().min(1),
  logDir: z.string(),
  /** An attempt's log keeps its first and last halves of this many bytes. */
  logMaxBytes: z
    .number()
    .int()
    .min(1024)
    .default(10 * 1024 * 1024),
  runDir: z.string(),
  lease: LeaseSchema,
  heartbeatMs: z.number().int().min(50).default(2_000),
  /** Extra environment for the agent (the slot's dev environment). */
  agentEnv: z.record(z.string()).default({}),
  beforeJob: z.array(BeforeJobStepSchema).default([]),
  /**
   * The main worktree whose `.worktreeinclude` the runner re-syncs into its worktree before each
   * job, before the before-job steps (stray ignored files removed too); in the runner's own
   * process, since a node child costs 100–200 ms per job on a loaded machine.
   */
  includeRoot: z.string().optional(),
  git: RunnerGitSchema.default({ mode: 'shared' }),
  limits: RunnerLimitsSchema.default({}),
  /** USD per million tokens by model, for agents that report no cost (contract/prices.ts). */
  prices: PriceTableSchema.default({}),
  /** Spending limits the runner enforces itself (docs/agents.md, "Budgets"). */
  budget: z
    .object({
      /** An attempt is stopped once the issue's spend passes this (USD). */
      perIssueUsd: z.number().positive().optional(),
    })
    .default({}),
  /**
   * Resource-aware admission: the runner claims no job while the host's available memory
   * (MemAvailable) is below this; it shows "waiting for memory". 0 turns it off.
   */
  admission: z
    .object({
      minAvailableMemoryBytes: z.number().int().min(0).default(0),
    })
    .default({}),
  /**
   * The agent runs under this uid/gid, apart from the runner, so it cannot read the runner's
   * configuration and credentials (its environment, `/proc/<runner>/environ`) nor signal it. The
   * runner must then be root with CAP_SETUID/CAP_SETGID (the Docker runtime's containers); its
   * git runs as this user too, and the files it writes for the slot are given to it.
   */
  agentUser: AgentUserSchema.optional(),
  /**
   * @defaultValue 3 — a job whose runner died while holding it this many times is failed as
   * `poison` by the runner that takes the slot over, instead of being handed back once more.
   */
  poisonAfter: z.number().int().min(1).default(3),
});
export type RunnerConfig = z.infer<typeof RunnerConfigSchema>;

const SLOT_RE = /^agent-(\d{3})$/;

export function slotId(n: number): string {
  if (!Number.isInteger(n) || n < 1 || n > 999)
    throw new RangeError(`slot number out of range: ${n}`);
  return `agent-${String(n).padStart(3, '0')}`;
}

export function slotNumber(agentId: string): number {
  const m = SLOT_RE.exec(agentId);
  if (!m?.[1]) throw new RangeError(`not a slot id: ${agentId}`);
  return Number(m[1]);
}

export const isSlotId = (s: string): boolean => SLOT_RE.test(s);

export const agentBranch = (agentId: string): string =>
  `agent/${agentId.slice('agent-'.length)}`;
export const issueBranch = (issueId: number): string => `issue/${issueId}`;
/**
 * The ref a runner starts from: `RunnerConfig.baseBranch` is a branch name (`main`), or the full
 * ref of a remote-tracking base the supervisor fetches (`refs/remotes/origin/main`).
 */
export const baseRefOf = (base: string): string =>
  base.startsWith('refs/') ? base : `refs/heads/${base}`;
/** Where the supervisor keeps a failed attempt's work, for a reviewer (never landed). */
export const attemptRef = (issueId: number, attempt: number): string =>
  `refs/supervisor/attempts/${issueId}/${attempt}`;
export const jobIdForIssue = (issueId: number): string => `issue-${issueId}`;

export function issueIdFromJobId(jobId: string): number | undefined {
  const m = /^issue-(\d+)$/.exec(jobId);
  return m?.[1] ? Number(m[1]) : undefined;
}

/** Result refs of remote runners live here, never under refs/heads. */
export const RESULT_REF_PREFIX = 'refs/supervisor/results/';
const RESULT_REF_RE =
  /^refs\/supervisor\/results\/(\d+|job-[0-9a-f]{40})\/(\d+)$/;

/**
 * The one ref a remote runner may push the result of (job, attempt) to:
 * `refs/supervisor/results/<issue>/<attempt>` (`job-<sha1 of the job id>` for foreign jobs).
 */
export function resultRefFor(jobId: string, attempt: number): string {
  const n = issueIdFromJobId(jobId);
  const key =
    n !== undefined
      ? String(n)
      : `job-${createHash('sha1').update(jobId).digest('hex')}`;
  return `${RESULT_REF_PREFIX}${key}/${attempt}`;
}

/** The parts of a well-formed result ref, or undefined for anything else. */
export function parseResultRef(
  ref: string,
): { key: string; attempt: number } | undefined {
  const m = RESULT_REF_RE.exec(ref);
  return m?.[1] && m[2] ? { key: m[1], attempt: Number(m[2]) } : undefined;
}

/** Queue names are namespaced per repository so repositories sharing a Redis never meet. */
export const queueNameFor = (repoId: string): string => `issues-${repoId}`;

/** Redis keys the supervisor and runners use besides BullMQ's own. */
export function supervisorKeys(prefix: string, queueName: string) {
  const base = `${prefix}:${queueName}:sup`;
  return {
    events: `${base}:events`,
    agent: (agentId: string) => `${base}:agent:${agentId}`,
    agents: `${base}:agents`,
    held: (agentId: string) => `${base}:held:${agentId}`,
    /**
     * Hash: job id → issue id of a foreign producer's job, written by the recorder when it adopts
     * the job. A runner takes a foreign job's issue id from here only: its own id and any
     * `issueId` in its data are the producer's, not ours.
     */
    adopted: `${base}:adopted`,
    /**
     * Counter the recorder increments once per reconcile round: a value other than its last one
     * plus one means Redis lost or rewound its data (restart without persistence, an old
     * snapshot), and the next round checks every live job instead of one page.
     */
    epoch: `${base}:epoch`,
    /**
     * USD the finished attempts of one job spent (runners add to it; budget.perIssue counts it),
     * per job id and creation time: a retried, reopened or requeued issue is a new job and starts
     * afresh. Expires 30 days after its last write.
     */
    spent: (jobId: string, createdAt: number) =>
      `${base}:spent:${jobId}:${createdAt}`,
    /** Hash: job id → how many runners died holding it (poison issues, docs/agents.md). */
    runnerDeaths: `${base}:runner-deaths`,
  };
}
