import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { LeaseSchema } from '../contract/job.js';
import { PriceTableSchema } from '../contract/prices.js';
import { SupervisorError } from './errors.js';

/**
 * Non-interactive invocations of the agent CLIs we know. Issue content arrives by file, never in
 * the string. Claude Code and Codex print their machine-readable events (stream-json needs
 * --verbose in -p mode): the runner reads tokens, cost and limits from them and writes them to
 * the log as readable lines (agent-runner/event-render.ts).
 */
export const AGENT_PRESETS = {
  claude:
    'claude -p --permission-mode acceptEdits --output-format stream-json --verbose < "$ISSUE_PROMPT_FILE"',
  codex: 'codex exec --full-auto --json - < "$ISSUE_PROMPT_FILE"',
  aider:
    'aider --yes-always --no-auto-commits --no-check-update --message-file "$ISSUE_PROMPT_FILE"',
} as const;

export const DEFAULT_DASHBOARD_PORT = 7420;

const duration = z
  .union([z.number().int().nonnegative(), z.string()])
  .transform((v, ctx) => {
    const ms = typeof v === 'number' ? v : parseDuration(v);
    if (ms === undefined) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        message: `not a duration: "${String(v)}" (use e.g. 500ms, 30s, 15m, 2h)`,
      });
      return z.NEVER;
    }
    return ms;
  });

/** A duration with a floor: a zero heartbeat or feed interval would spin, not run. */
const durationAtLeast = (min: number, fallback: number) =>
  duration
    .refine((ms) => ms >= min, { message: `must be at least ${min} ms` })
    .default(fallback);

const bytes = z
  .union([z.number().int().positive(), z.string()])
  .transform((v, ctx) => {
    const n = typeof v === 'number' ? v : parseBytes(v);
    if (n === undefined) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        message: `not a size: "${String(v)}" (use e.g. 512m, 12g)`,
      });
      return z.NEVER;
    }
    return n;
  });

export const PortsSchema = z
  .object({
    /** @defaultValue 8011 — first port of slot blocks. */
    base: z.number().int().min(1024).max(65535).default(8011),
    /** @defaultValue 10 — ports per slot. */
    blockSize: z.number().int().min(1).max(1000).default(10),
    /** @defaultValue 64 — how many blocks may be handed out. */
    maxBlocks: z.number().int().min(1).default(64),
    /**
     * Named ports: an offset inside the block (`APP_PORT: 0`), or a rule relative to the block
     * like the article's `VITE_PORT = 5173 + (APP_PORT − 8011)`: `{ "base": 5173 }`.
     * @defaultValue `{ APP_PORT: 0, VITE_PORT: 1 }`
     */
    names: z
      .record(
        z
          .string()
          .regex(/^[A-Z][A-Z0-9_]*$/, 'port names are upper-case env names'),
        z.union([
          z.number().int().min(0),
          z.object({ base: z.number().int().min(1).max(65535) }),
        ]),
      )
      .default({ APP_PORT: 0, VITE_PORT: 1 }),
  })
  .strict();

export const EnvSchema = z
  .object({
    /** @defaultValue true — allocate ports, Redis DB and Postgres database per slot. */
    enabled: z.boolean().default(true),
    ports: PortsSchema.default({}),
    redis: z
      .object({
        enabled: z.boolean().default(true),
        /** @defaultValue [1, 15] — DB 0 stays with the queue. */
        dbRange: z
          .tuple([z.number().int().min(0), z.number().int().min(0)])
          .default([1, 15]),
        /**
         * Server the apps use. Default: the supervisor's Redis with the process runtime; with
         * runners in containers or on other hosts none (per-slot Redis is off) unless set here —
         * the queue's server would hand its password to every agent.
         */
        url: z.string().optional(),
        /**
         * FLUSHDB the slot's DB before every job.
         * @defaultValue `postgres.resetPerIssue` — one switch resets both unless set here.
         */
        resetPerIssue: z.boolean().optional(),
      })
      .strict()
      .default({}),
    postgres: z
      .object({
        /** Admin URL of the shared server (POSTGRES_URL); no databases are allocated without it. */
        url: z.string().optional(),
        /** @defaultValue "app_" */
        prefix: z
          .string()
          .regex(
            /^[a-z_][a-z0-9_]{0,30}$/,
            'prefix must be a lower-case SQL identifier start (a-z, 0-9, _)',
          )
          .default('app_'),
        template: z
          .string()
          .regex(
            /^[A-Za-z_][A-Za-z0-9_]{0,62}$/,
            'template must be a plain database name',
          )
          .optional(),
        resetPerIssue: z.boolean().default(false),
      })
      .strict()
      .default({}),
  })
  .strict();

export const LandSchema = z
  .object({
    /** @defaultValue "rebase" — how an issue's commits come onto the base tip. */
    strategy: z.enum(['rebase', 'merge', 'squash']).default('rebase'),
    /** Shell command that must pass on exactly the tree that lands (e.g. "npm test"). */
    check: z.string().min(1).optional(),
    /** @defaultValue 30m */
    checkTimeout: duration.default(30 * 60_000),
    /** A remote the base branch is pushed to after each landing (e.g. "origin"). */
    push: z.string().min(1).optional(),
    /** @defaultValue false — the running supervisor lands each issue as soon as it is done. */
    auto: z.boolean().default(false),
    /** @defaultValue "requeue" — a conflict sends the issue back to an agent, or holds it. */
    onConflict: z.enum(['requeue', 'hold']).default('requeue'),
    /** @defaultValue "requeue" — a failed check sends the issue back to an agent, or holds it. */
    onCheckFailure: z.enum(['requeue', 'hold']).default('requeue'),
    /** @defaultValue 2 — requeues per issue before it is held for a person. */
    maxRequeues: z.number().int().min(0).max(20).default(2),
    /** @defaultValue 60s — a remote-tracking base (origin/main) is fetched at most this often. */
    fetchInterval: duration.default(60_000),
  })
  .strict();

export const ConfigSchema = z
  .object({
    redisUrl: z.string().optional(),
    /**
     * @defaultValue false — `start` refuses a queue Redis that answers without a password when
     * runners run in containers (`docker`, `swarm`) or on other hosts (`git.runners` "remote"):
     * whoever reaches it can forge results (docs/security.md). True accepts one anyway
     * (SUPERVISOR_ALLOW_UNAUTHENTICATED_REDIS=1).
     */
    allowUnauthenticatedRedis: z.boolean().default(false),
    /** @defaultValue "sup" — Redis key prefix for the queue and our own keys. */
    prefix: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,40}$/, 'prefix may hold letters, digits, _ . -')
      .default('sup'),
    agentCommand: z.string().min(1).optional(),
    agentPreset: z.enum(['claude', 'codex', 'aider']).optional(),
    /** @defaultValue 0 — agents started by `supervisor start` when no count was set before. */
    agents: z.number().int().min(0).optional(),
    /**
     * Agents follow the queue's depth between `min` and `max` (docs/agents.md, "Autoscaling");
     * `supervisor scale N` turns it off, `scale --auto MIN..MAX` on. Not with `agents`.
     */
    autoscale: z
      .object({
        min: z.number().int().min(0),
        max: z.number().int().min(1),
        /** @defaultValue 2m — an agent idle this long is stopped (highest slot first). */
        idleGrace: duration.default(120_000),
      })
      .strict()
      .refine((a) => a.min <= a.max, 'min must not be above max')
      .optional(),
    /** Upper bound for `scale`; default total memory ÷ memoryPerAgent. */
    maxAgents: z.number().int().min(1).optional(),
    /** @defaultValue 12g on Linux, 3g on macOS */
    memoryPerAgent: bytes.optional(),
    /**
     * Disk an agent's files may take: its worktree, and in a Docker container the places its
     * user can write (HOME, /var/tmp). Past it the agent is stopped and the attempt fails with
     * the kind `disk`. Unset: no budget. Also SUPERVISOR_DISK_PER_AGENT.
     */
    diskPerAgent: bytes.optional(),
    /** The host's low-disk watermark (docs/reliability.md). */
    disk: z
      .object({
        /**
         * @defaultValue 1g — claiming pauses (kind `disk`) while the filesystem of the
         * repository or `.supervisor/` has less free; 0 turns it off.
         */
        minFree: z.union([z.literal(0), bytes]).default(1024 ** 3),
        /** @defaultValue 5s — how often a runner measures its agent's files (diskPerAgent). */
        checkInterval: duration.default(5_000),
      })
      .strict()
      .default({}),
    /** @defaultValue 4 on Linux, 2 on macOS */
    cpusPerAgent: z.number().positive().optional(),
    runtime: z.enum(['process', 'docker', 'swarm']).default('process'),
    /** Branch agents start from; default the main worktree's branch at `init`. */
    baseBranch: z
      .string()
      .min(1)
      .refine(
        isBranchName,
        'not a valid branch name (no leading "-", "..", spaces, control characters or any of ~^:?*[\\)',
      )
      .optional(),
    /** @defaultValue 2 — attempts per issue. */
    attempts: z.number().int().min(1).max(100).default(2),
    /** @defaultValue 10s — first retry delay (exponential). */
    backoff: duration.default(10_000),
    lease: z
      .object({
        lockDuration: duration.optional(),
        stalledInterval: duration.optional(),
        maxStalledCount: z.number().int().min(2).optional(),
        progressTimeout: duration.optional(),
        killGrace: duration.optional(),
      })
      .strict()
      .default({}),
    /** @defaultValue 500ms — how often open issues are fed. */
    feedInterval: durationAtLeast(10, 500),
    /** @defaultValue 5s — reconcile SQLite with the queue's own state. */
    reconcileInterval: durationAtLeast(100, 5_000),
    /**
     * @defaultValue 5m — the longest one recorder handler (a result, a claim, a reconcile) may
     * take before the next one runs anyway, so one hung call cannot stop all recording.
     */
    recorderDeadline: duration.default(300_000),
    /** @defaultValue 2s */
    heartbeat: durationAtLeast(50, 2_000),
    /**
     * @defaultValue 3 — an issue whose runners died this many times while holding it is failed
     * as `poison` (its attempts kill their runner), so the slots go on with other issues.
     */
    poisonAfter: z.number().int().min(1).max(100).default(3),
    /** @defaultValue 1s — first restart delay of a crashed runner (doubles up to 30 s). */
    restartBackoff: duration.default(1_000),
    /** @defaultValue 30s — time a stopping runner gets to hand its job back. */
    stopGrace: duration.default(30_000),
    /** Resource-aware admission (docs/agents.md). */
    admission: z
      .object({
        /**
         * A slot claims no job while the host has less memory available than this.
         * @defaultValue the per-agent memory budget; 0 turns it off
         */
        minAvailableMemory: z.union([z.literal(0), bytes]).optional(),
      })
      .strict()
      .default({}),
    /** Provider usage limits: the pool pauses until the reset (docs/agents.md). */
    limits: z
      .object({
        /** @defaultValue 1m — added to the reset time the provider gave. */
        margin: duration.default(60_000),
        /** @defaultValue 5m — pause when no reset time was given (exit 75, a bare HTTP 429). */
        defaultPause: duration.default(300_000),
        /** @defaultValue 7 days — the longest pause a limit can cause. */
        maxPause: duration.default(7 * 86_400_000),
      })
      .strict()
      .default({}),
    /**
     * USD per million tokens by model (`input`, `output`, `cacheRead`, `cacheWrite`), for runs
     * whose agent reports tokens but no cost (Codex) and for running spend (budgets). A key may
     * be a model name or a prefix of one; `*` prices any other model. @defaultValue {}
     */
    prices: PriceTableSchema.default({}),
    /** Spending limits in USD (docs/agents.md, "Budgets"). */
    budget: z
      .object({
        /** A running attempt is stopped, and its issue failed, once the issue's spend passes this. */
        perIssue: z.number().positive().optional(),
        /** Claiming pauses until the next local day once the day's spend reaches this. */
        daily: z.number().positive().optional(),
      })
      .strict()
      .default({}),
    logs: z
      .object({
        /**
         * @defaultValue 14d — attempt logs and rotated runner logs older than this are deleted
         * (by `cleanup`, and hourly by the running supervisor).
         */
        keep: duration.default(14 * 86_400_000),
        /** @defaultValue 10m (MiB) — an attempt's log keeps its head and tail within this. */
        maxBytes: bytes.default(10 * 1024 * 1024),
        /** @defaultValue 10m (MiB) — a runner's log is rotated past this size. */
        runnerMaxBytes: bytes.default(10 * 1024 * 1024),
        /** @defaultValue 3 — rotated runner logs kept (`agent-001.log.1` … `.3`). */
        runnerFiles: z.number().int().min(1).max(20).default(3),
      })
      .strict()
      .default({}),
    dashboard: z
      .object({
        enabled: z.boolean().default(true),
        host: z.string().default('127.0.0.1'),
        /**
         * Unset: 7420, or the next free port with a warning when it is taken. Set: exactly this
         * port, and an error when it is taken. 0: any free port.
         */
        port: z.number().int().min(0).max(65535).optional(),
        token: z
          .string()
          .min(16, 'the dashboard token must be at least 16 characters')
          .optional(),
        readOnly: z.boolean().default(false),
      })
      .strict()
      .default({}),
    env: EnvSchema.default({}),
    /** Landing done issues on the base branch: the merge queue (docs/landing.md). */
    land: LandSchema.default({}),
    /** Dependencies between issues (`issue add --after`). */
    deps: z
      .object({
        /**
         * @defaultValue "auto" — a dependent is fed once its dependencies are `merged`, or `done`
         * when nothing lands (no land.check, land.auto off and nothing merged yet).
         */
        until: z.enum(['auto', 'merged', 'done']).default('auto'),
      })
      .strict()
      .default({}),
    /** Runners on other hosts (Swarm, Kubernetes, plain); see docs/multi-host.md. */
    git: z
      .object({
        /**
         * @defaultValue "shared" — how runners started on this host reach git: a worktree of this
         * repository, or (`remote`) their own clone that pushes result refs, as on another host.
         */
        runners: z.enum(['shared', 'remote']).default('shared'),
        /**
         * A remote every runner reaches (e.g. your origin): remote runners fetch from it and push
         * result refs (`refs/supervisor/results/*`) to it. Default: this repository, served by the
         * dashboard at `/git/repo.git`, results received in `.supervisor/results.git`.
         */
        remoteUrl: z.string().min(1).optional(),
        /**
         * Token remote runners present to the dashboard's git endpoint (SUPERVISOR_GIT_TOKEN); it
         * allows fetching and pushing result refs, nothing else. The dashboard token works too.
         */
        token: z
          .string()
          .min(16, 'the git token must be at least 16 characters')
          .optional(),
        /** @defaultValue 10m — a runner's fetch or push that takes longer counts as unreachable. */
        timeout: duration.default(600_000),
        /** @defaultValue 2m — any other git command of the supervisor that takes longer is killed. */
        commandTimeout: duration.default(120_000),
      })
      .strict()
      .default({}),
    /** The Docker runtime (`--runtime docker`); see docs/docker.md. */
    /** `--runtime swarm`: the runners as one Docker Swarm service (docs/multi-host.md). */
    swarm: z
      .object({
        /** @defaultValue "host" — network of the tasks; an overlay network when Redis and git are services too. */
        network: z.string().min(1).default('host'),
        /** Redis as the tasks reach it. Default: the supervisor's URL. */
        redisUrl: z.string().optional(),
        /** Git remote as the tasks reach it. Default: git.remoteUrl, else the dashboard's /git/repo.git. */
        gitUrl: z.string().optional(),
        /** Placement constraints, e.g. `["node.labels.agents == true"]`. @defaultValue [] */
        constraints: z.array(z.string().min(1)).default([]),
      })
      .strict()
      .default({}),
    docker: z
      .object({
        /** @defaultValue "agent-supervisor-runner:latest" — the runner image (`supervisor image build`). */
        image: z.string().min(1).default('agent-supervisor-runner:latest'),
        /**
         * Network the runner containers join. Default: the repository's own bridge network
         * (`agent-supervisor-<repository id>`, created by `start`): containers of other
         * repositories are not on it, and the host's services are reached as
         * `host.docker.internal` (loopback URLs are rewritten), so they must listen where the
         * containers reach them. `host`: the host's network, loopback services included — for
         * every agent too (docs/docker.md#networks).
         */
        network: z.string().min(1).optional(),
        /**
         * Redis as the containers reach it, e.g. `redis://redis:6379` on `app_local`. Default: the
         * supervisor's, with 127.0.0.1 rewritten to host.docker.internal off the host network.
         */
        redisUrl: z.string().optional(),
        /**
         * `uid:gid` the agents run as (never root; the runner is root in the container with a
         * few capabilities, and the agent cannot read it). Default: yours; when the supervisor
         * runs as root, the repository owner's, or 1000:1000 when root owns the repository too.
         */
        user: z
          .string()
          .regex(
            /^[1-9]\d*:\d+$/,
            'user must be "uid:gid" with a uid other than 0',
          )
          .optional(),
        /** Host environment variables passed into the containers when set (API keys, proxies). */
        passEnv: z
          .array(
            z
              .string()
              .regex(
                /^[A-Za-z_][A-Za-z0-9_]*$/,
                'passEnv holds variable names',
              ),
          )
          .default([
            'ANTHROPIC_API_KEY',
            'ANTHROPIC_AUTH_TOKEN',
            'ANTHROPIC_BASE_URL',
            'CLAUDE_CODE_OAUTH_TOKEN',
            'OPENAI_API_KEY',
            'OPENAI_BASE_URL',
            'HTTP_PROXY',
            'HTTPS_PROXY',
            'NO_PROXY',
            'http_proxy',
            'https_proxy',
            'no_proxy',
          ]),
        /** Extra bind mounts: `/host/path[:/container/path][:ro]`. @defaultValue [] */
        mounts: z.array(z.string()).default([]),
        /** @defaultValue true — mount ~/.claude, ~/.codex, ~/.gitconfig and ~/.ssh (or the SSH agent socket) read-only when present. */
        credentials: z.boolean().default(true),
        /** @defaultValue 10s — how often Docker runs the runner's health check. */
        healthInterval: duration.default(10_000),
        /** @defaultValue 4096 — processes per container. */
        pidsLimit: z.number().int().min(16).default(4096),
        /** @defaultValue 1024 — size cap of the container's /tmp (a tmpfs, counted in its memory), MiB. */
        tmpSizeMiB: z.number().int().min(16).default(1024),
      })
      .strict()
      .default({}),
  })
  .strict();

export type ConfigInput = z.input<typeof ConfigSchema>;
export type Config = z.output<typeof ConfigSchema> & {
  agentCommandResolved: string | undefined;
  leaseResolved: z.output<typeof LeaseSchema>;
};

/** The price table and per-issue budget every runner enforces (all runner configurations). */
export function runnerSpending(c: Pick<Config, 'prices' | 'budget'>) {
  return {
    prices: c.prices,
    budget:
      c.budget.perIssue !== undefined ? { perIssueUsd: c.budget.perIssue } : {},
  };
}

/**
 * What `git check-ref-format --branch` accepts, checked without running git: the name ends up
 * in git argv (`refs/heads/<name>`), so nothing that reads as an option or climbs out of refs/.
 */
export function isBranchName(name: string): boolean {
  if (
    name.startsWith('-') ||
    name.startsWith('/') ||
    name.endsWith('/') ||
    name.endsWith('.') ||
    name.endsWith('.lock')
  )
    return false;
  if (
    name === '@' ||
    name.includes('..') ||
    name.includes('//') ||
    name.includes('@{') ||
    name.includes('/.')
  )
    return false;

  return !/[\u0000-\u0020\u007f~^:?*[\\]/.test(name) && !name.startsWith('.');
}

export function parseDuration(s: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(s);
  if (!m?.[1]) return undefined;
  const n = Number(m[1]);
  const unit = m[2] ?? 'ms';
  return Math.round(
    n *
      { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[
        unit as 'ms' | 's' | 'm' | 'h' | 'd'
      ],
  );
}

export function parseBytes(s: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$/i.exec(s);
  if (!m?.[1]) return undefined;
  const unit = (m[2] ?? 'b').toLowerCase()[0] as 'b' | 'k' | 'm' | 'g' | 't';
  return Math.round(
    Number(m[1]) *
      { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[unit],
  );
}

/** Environment variables that configure the supervisor. */
function fromEnv(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const lease: Record<string, unknown> = {};
  const dashboard: Record<string, unknown> = {};
  const int = (name: string): number | string | undefined => {
    const v = env[name];
    if (v === undefined || v === '') return undefined;
    return /^\d+$/.test(v.trim()) ? Number(v) : v;
  };
  const set = (obj: Record<string, unknown>, key: string, v: unknown) => {
    if (v !== undefined && v !== '') obj[key] = v;
  };
  set(out, 'redisUrl', env.REDIS_URL);
  const insecure = env.SUPERVISOR_ALLOW_UNAUTHENTICATED_REDIS;
  if (insecure !== undefined && insecure !== '')
    out.allowUnauthenticatedRedis = ['1', 'true', 'yes'].includes(
      insecure.trim().toLowerCase(),
    );
  set(out, 'prefix', env.SUPERVISOR_PREFIX);
  set(out, 'agentCommand', env.SUPERVISOR_AGENT_COMMAND);
  set(out, 'agentPreset', env.SUPERVISOR_AGENT);
  set(out, 'agents', int('SUPERVISOR_AGENTS'));
  set(out, 'maxAgents', int('SUPERVISOR_MAX_AGENTS'));
  set(out, 'memoryPerAgent', int('SUPERVISOR_MEMORY_PER_AGENT'));
  set(out, 'diskPerAgent', int('SUPERVISOR_DISK_PER_AGENT'));
  const disk: Record<string, unknown> = {};
  set(disk, 'minFree', int('SUPERVISOR_DISK_MIN_FREE'));
  set(disk, 'checkInterval', int('SUPERVISOR_DISK_CHECK_INTERVAL'));
  if (Object.keys(disk).length) out.disk = disk;
  set(out, 'runtime', env.SUPERVISOR_RUNTIME);
  set(out, 'baseBranch', env.SUPERVISOR_BASE_BRANCH);
  set(out, 'attempts', int('SUPERVISOR_ATTEMPTS'));
  set(out, 'backoff', int('SUPERVISOR_BACKOFF'));
  set(out, 'feedInterval', int('SUPERVISOR_FEED_INTERVAL'));
  set(out, 'reconcileInterval', int('SUPERVISOR_RECONCILE_INTERVAL'));
  set(out, 'recorderDeadline', int('SUPERVISOR_RECORDER_DEADLINE'));
  set(out, 'heartbeat', int('SUPERVISOR_HEARTBEAT'));
  set(out, 'restartBackoff', int('SUPERVISOR_RESTART_BACKOFF'));
  set(out, 'poisonAfter', int('SUPERVISOR_POISON_AFTER'));
  set(out, 'stopGrace', int('SUPERVISOR_STOP_GRACE'));
  const limits: Record<string, unknown> = {};
  set(limits, 'margin', int('SUPERVISOR_LIMIT_MARGIN'));
  set(limits, 'defaultPause', int('SUPERVISOR_LIMIT_DEFAULT_PAUSE'));
  if (Object.keys(limits).length) out.limits = limits;
  const budget: Record<string, unknown> = {};
  const usd = (name: string): number | string | undefined => {
    const v = env[name]?.trim();
    if (v === undefined || v === '') return undefined;
    return /^\d+(?:\.\d+)?$/.test(v) ? Number(v) : v;
  };
  set(budget, 'perIssue', usd('SUPERVISOR_BUDGET_PER_ISSUE'));
  set(budget, 'daily', usd('SUPERVISOR_BUDGET_DAILY'));
  if (Object.keys(budget).length) out.budget = budget;
  const admission = env.SUPERVISOR_ADMISSION_MEMORY;
  if (admission !== undefined && admission !== '')
    out.admission = {
      minAvailableMemory: /^\d+$/.test(admission.trim())
        ? Number(admission)
        : admission,
    };
  set(lease, 'lockDuration', int('SUPERVISOR_LOCK_DURATION'));
  set(lease, 'stalledInterval', int('SUPERVISOR_STALLED_INTERVAL'));
  set(lease, 'maxStalledCount', int('SUPERVISOR_MAX_STALLED_COUNT'));
  set(lease, 'progressTimeout', int('SUPERVISOR_PROGRESS_TIMEOUT'));
  set(lease, 'killGrace', int('SUPERVISOR_KILL_GRACE'));
  const git: Record<string, unknown> = {};
  set(git, 'runners', env.SUPERVISOR_GIT_RUNNERS);
  set(git, 'remoteUrl', env.SUPERVISOR_GIT_REMOTE_URL);
  set(git, 'token', env.SUPERVISOR_GIT_TOKEN);
  set(git, 'timeout', int('SUPERVISOR_GIT_TIMEOUT'));
  set(git, 'commandTimeout', int('SUPERVISOR_GIT_COMMAND_TIMEOUT'));
  if (Object.keys(git).length) out.git = git;
  set(dashboard, 'token', env.SUPERVISOR_DASHBOARD_TOKEN);
  set(dashboard, 'host', env.SUPERVISOR_DASHBOARD_HOST);
  set(dashboard, 'port', int('SUPERVISOR_DASHBOARD_PORT'));
  const docker: Record<string, unknown> = {};
  set(docker, 'image', env.SUPERVISOR_DOCKER_IMAGE);
  set(docker, 'network', env.SUPERVISOR_DOCKER_NETWORK);
  if (Object.keys(docker).length) out.docker = docker;
  if (Object.keys(lease).length) out.lease = lease;
  if (Object.keys(dashboard).length) out.dashboard = dashboard;
  if (env.POSTGRES_URL) out.env = { postgres: { url: env.POSTGRES_URL } };
  const land: Record<string, unknown> = {};
  set(land, 'strategy', env.SUPERVISOR_LAND_STRATEGY);
  set(land, 'check', env.SUPERVISOR_LAND_CHECK);
  set(land, 'checkTimeout', int('SUPERVISOR_LAND_CHECK_TIMEOUT'));
  set(land, 'push', env.SUPERVISOR_LAND_PUSH);
  if (env.SUPERVISOR_LAND_AUTO) land.auto = env.SUPERVISOR_LAND_AUTO === 'true';
  set(land, 'onConflict', env.SUPERVISOR_LAND_ON_CONFLICT);
  set(land, 'onCheckFailure', env.SUPERVISOR_LAND_ON_CHECK_FAILURE);
  set(land, 'maxRequeues', int('SUPERVISOR_LAND_MAX_REQUEUES'));
  set(land, 'fetchInterval', int('SUPERVISOR_LAND_FETCH_INTERVAL'));
  if (Object.keys(land).length) out.land = land;
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Deep merge of plain objects; later layers win. */
export function mergeLayers(
  ...layers: Array<Record<string, unknown> | undefined>
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const layer of layers) {
    if (!layer) continue;
    for (const [k, v] of Object.entries(layer)) {
      if (v === undefined) continue;
      out[k] =
        isPlainObject(v) && isPlainObject(out[k])
          ? mergeLayers(out[k] as Record<string, unknown>, v)
          : v;
    }
  }
  return out;
}

export function readConfigFile(
  file: string,
): Record<string, unknown> | undefined {
  if (!existsSync(file)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw new SupervisorError(
      'ERR_SUP_CONFIG',
      `${file} is not valid JSON: ${(cause as Error).message}`,
      { hint: 'fix the file or remove it', cause },
    );
  }
  if (!isPlainObject(parsed))
    throw new SupervisorError(
      'ERR_SUP_CONFIG',
      `${file} must hold a JSON object`,
    );
  return parsed;
}

/** Defaults < supervisor.config.json < environment < flags; validated once, frozen. */
export function loadConfig(
  opts: {
    configFile?: string;
    env?: NodeJS.ProcessEnv;
    flags?: Record<string, unknown>;
  } = {},
): Readonly<Config> {
  const env = opts.env ?? process.env;
  const merged = mergeLayers(
    opts.configFile ? readConfigFile(opts.configFile) : undefined,
    fromEnv(env),
    opts.flags,
  );
  const result = ConfigSchema.safeParse(merged);
  if (!result.success) {
    const lines = result.error.issues.map(
      (i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`,
    );
    throw new SupervisorError(
      'ERR_SUP_CONFIG',
      `invalid configuration:\n${lines.join('\n')}`,
      {
        hint: 'check flags, SUPERVISOR_* environment variables and supervisor.config.json',
      },
    );
  }
  const c = result.data;
  // Where runners run in containers or on other hosts, the apps' per-slot Redis is not the
  // queue's unless env.redis.url names a server: its URL (with the queue's password) would reach
  // every agent.
  if (
    c.env.redis.url === undefined &&
    (c.runtime !== 'process' || c.git.runners === 'remote')
  )
    c.env.redis.enabled = false;
  const leaseResult = LeaseSchema.safeParse({
    lockDurationMs: c.lease.lockDuration,
    stalledIntervalMs: c.lease.stalledInterval,
    maxStalledCount: c.lease.maxStalledCount,
    progressTimeoutMs: c.lease.progressTimeout,
    killGraceMs: c.lease.killGrace,
  });
  if (!leaseResult.success) {
    // The contract's limits, said in the configuration's own names and units.
    const names: Record<string, string> = {
      lockDurationMs: 'lease.lockDuration',
      stalledIntervalMs: 'lease.stalledInterval',
      maxStalledCount: 'lease.maxStalledCount',
      progressTimeoutMs: 'lease.progressTimeout',
      killGraceMs: 'lease.killGrace',
    };
    const lines = leaseResult.error.issues.map((i) => {
      const key = String(i.path[0] ?? '');
      const min = i.code === 'too_small' ? Number(i.minimum) : undefined;
      const what =
        min === undefined
          ? i.message
          : key.endsWith('Ms')
            ? `must be at least ${min} ms`
            : `must be at least ${min}`;
      return `  ${names[key] ?? key}: ${what}`;
    });
    throw new SupervisorError(
      'ERR_SUP_CONFIG',
      `invalid configuration:\n${lines.join('\n')}`,
      {
        hint: 'check flags, SUPERVISOR_* environment variables and supervisor.config.json',
      },
    );
  }
  const lease = leaseResult.data;
  const agentCommandResolved =
    c.agentCommand ??
    (c.agentPreset ? AGENT_PRESETS[c.agentPreset] : undefined);
  return Object.freeze({ ...c, agentCommandResolved, leaseResolved: lease });
}
