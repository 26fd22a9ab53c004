import {
  agentDiskPaths,
  clearAgentScratch,
  objectStoreBaseline,
  removeIgnoredSince,
  watchDisk,
} from './disk-budget.js';
import { ENV_FILE } from '../contract/worktreeinclude.js';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { CappedLog } from './capped-log.js';
import { basename, join } from 'node:path';
import { attemptStartLine } from '../contract/attempt-log.js';
import { LineStamper } from './line-stamper.js';
import {
  DelayedError,
  RateLimitError,
  UnrecoverableError,
  WaitingError,
  type Job,
  type Queue,
} from 'bullmq';
import type { Redis } from 'ioredis';
import {
  JobDataSchema,
  resultRefFor,
  type AgentUsage,
  type JobResult,
  type RunnerConfig,
  type supervisorKeys,
} from '../contract/job.js';
import {
  AttemptError,
  coerceError,
  type AttemptFailureKind,
} from '../contract/errors.js';
import {
  writeAgentRecord,
  type AgentRecord,
} from '../contract/agent-record.js';
import type { Current, Log } from './current-job.js';
import { AgentGuard } from './agent-guard.js';
import { AgentProcess } from './agent-process.js';
import {
  planIncluded,
  resyncIncluded,
  runBeforeJob,
  type IncludedPlan,
} from './before-job.js';
import type { EventPublisher } from './event-publisher.js';
import { agentEnvironment, writeIssueFiles } from './issue-input.js';
import { issueIdForJob } from './issue-id.js';
import type { JobContainment } from './job-containment.js';
import { RefWatch, describeChanges } from './ref-watch.js';
import { oomKillCount, outOfMemoryMessage } from './oom.js';
import { GitRemoteError } from './remote-clone.js';
import { SlotBrokenError, prepareWorkspace } from './slot-health.js';
import type { RemoteGate } from './remote-gate.js';
import type { CommitOutcome, Workspace } from './workspace.js';
import { handBackBlocked, handBackForLimit } from './hand-back.js';
import { UsageLimitScanner, usageLimitOf } from './usage-limits.js';
import { AgentUsageScanner } from './agent-usage.js';
import { IssueSpend, overBudget } from './issue-spend.js';
import { EventRenderer } from './event-render.js';

/** A foreign job handed back because it was not adopted yet is offered again after this. */
const ADOPTION_RETRY_MS = 2_000;

export type { Current, Log } from './current-job.js';

/** What the executor needs from the runner around it. */
export interface ExecutorHost {
  /** The runner is stopping (or lost its slot): hand jobs back. */
  shuttingDown(): boolean;
  readonly remote: RemoteGate | undefined;
  /** Shut while the agent's program is not installed (exit 127 checks it). */
  readonly program: RemoteGate;
  /** Throws when the agent's program cannot be found the way its shell would look. */
  probeProgram(): Promise<void>;
  /** The queue itself, for its rate limit (usage limits). */
  readonly queue: Queue;
  /** A job was taken (state `working`). */
  began(cur: Current): void;
  /** The job is done with, however it ended (admission for the next one is checked here). */
  ended(): Promise<void>;
  /** The slot cannot work (its worktree stays unusable after a repair): take no more jobs. */
  slotBroken(err: Error): void;
}

/**
 * Runs one job under its lock: finds its issue id, prepares the workspace, runs the before-job
 * steps and the agent, commits, publishes the result (remote mode) and reports the outcome; hands
 * the job back without spending an attempt when the runner stops or the git remote is away.
 */
export class JobExecutor {
  constructor(
    private readonly cfg: RunnerConfig,
    private readonly log: Log,
    private readonly echo: NodeJS.WritableStream,
    private readonly redis: Redis,
    private readonly keys: ReturnType<typeof supervisorKeys>,
    private readonly workspace: Workspace,
    private readonly containment: JobContainment,
    private readonly events: EventPublisher,
    private readonly host: ExecutorHost,
  ) {}

  private watch: RefWatch | undefined | null = null;
  /** Kills the running agent if this runner dies (one shell for the runner's life). */
  private readonly guard = new AgentGuard();

  /** Shared mode: refs outside the slot's branch, checked over each agent run. */
  private get refWatch(): RefWatch | undefined {
    if (this.watch === null)
      this.watch =
        this.cfg.git.mode === 'shared'
          ? new RefWatch(
              this.cfg.repoPath,
              this.cfg.baseBranch,
              this.cfg.branch,
            )
          : undefined;
    return this.watch;
  }

  private get agentRecordFile(): string {
    return join(this.cfg.runDir, 'agent.json');
  }

  async process(
    job: Job<unknown, JobResult>,
    token: string | undefined,
  ): Promise<JobResult> {
    if (!token) throw new Error('worker gave no lock token');
    const parsed = JobDataSchema.safeParse(job.data);
    if (!parsed.success) {
      const why = parsed.error.issues
        .map((i) => `${i.path.join('.') || 'data'}: ${i.message}`)
        .join('; ');
      throw new UnrecoverableError(
        `invalid job data (${why}); see the job contract in the README`,
      );
    }
    const data = parsed.data;
    const attempt = data.attemptOffset + job.attemptsStarted;
    const jobId = job.id!;
    const cur: Current = {
      job,
      token,
      attempt,
      agent: undefined,
      issueId: '',
      title: data.title,
      leaseLost: false,
    };
    this.host.began(cur);
    await this.redis.set(
      this.keys.held(this.cfg.agentId),
      JSON.stringify({ jobId, token, attempt }),
    );
    // The claim's own time: BullMQ stamps processedOn with this runner's clock as it asks Redis
    // for the job, so a claim that Redis let through before a pause took hold reads as earlier
    // than the pause, however long this process took to get here.
    const startedAt = job.processedOn ?? Date.now();
    let logPath = '';
    try {
      const issueId = await issueIdForJob(
        jobId,
        data,
        { redis: this.redis, key: this.keys.adopted },
        { stop: () => this.host.shuttingDown() || cur.leaseLost },
      );
      if (issueId === undefined) return await this.handBackUnadopted(cur);
      cur.issueId = issueId;
      logPath = join(
        this.cfg.logDir,
        `issue-${issueId}-attempt-${attempt}.log`,
      );
      let baseSha: string;
      // The previous job's stragglers must not write into this job's worktree or hold its ports.
      await this.containment.sweepBeforeJob();
      // The reset's `git clean` keeps the .worktreeinclude files and removes every other ignored.
      const included: IncludedPlan | undefined =
        this.cfg.includeRoot === undefined
          ? undefined
          : await planIncluded(this.cfg.includeRoot);
      try {
        baseSha = await prepareWorkspace(
          this.workspace,
          this.cfg,
          this.log,
          included?.keep,
        );
      } catch (err) {
        if (err instanceof GitRemoteError)
          await this.handBackForRemote(cur, err);
        if (err instanceof SlotBrokenError) {
          // Not the issue's fault: the job goes back unspent, another slot takes it.
          this.host.slotBroken(err);
          await handBackBlocked(
            this.handBack,
            cur,
            undefined,
            err,
            'slot-broken',
          );
        }
        throw err;
      }
      const refsBefore = await this.refWatch?.snapshot();
      const files = writeIssueFiles(this.cfg, data, issueId);
      const log = new CappedLog(
        logPath,
        this.cfg.logMaxBytes,
        this.cfg.agentUser,
      );
      // Every line the attempt's log gets is stamped with the time it arrived.
      const stamped = new LineStamper(log);
      let logError: string | undefined;
      log.on('error', (err) => {
        logError ??= `the run log ${logPath} could not be written: ${err.message}`;
        this.log('cannot write the run log', { logPath, error: err.message });
      });
      this.echo.write(
        `${new Date().toISOString()} ${attemptStartLine({ agentId: this.cfg.agentId, jobId, attempt, logFile: basename(logPath), title: data.title })}\n`,
      );
      // The claim is recorded before anything runs, so every attempt that starts has a run row.
      await this.events.publish({
        type: 'claim',
        jobId,
        attempt,
        agentId: this.cfg.agentId,
        at: startedAt,
        logPath,
        baseSha,
      });
      // Before-job steps run the user's commands in the worktree: the next job's sweep is full.
      if (this.cfg.beforeJob.length) this.containment.willRun();
      const stepError =
        (this.cfg.includeRoot !== undefined &&
          (await resyncIncluded(
            this.cfg.includeRoot,
            this.cfg.worktreePath,
            stamped,
            included,
          ))) ||
        (await runBeforeJob(this.cfg.beforeJob, {
          cwd: this.cfg.worktreePath,
          env: agentEnvironment(this.cfg, data, issueId, baseSha, files, ''),
          log: stamped,
        }));
      if (stepError) {
        stamped.end();
        await new Promise<void>((r) => log.end(r));
        throw new AttemptError('before-job', stepError);
      }
      const marker = randomUUID();
      const oomKillsBefore = oomKillCount();
      const limits = new UsageLimitScanner();
      const usageScan = new AgentUsageScanner(this.cfg.prices);
      const spend = new IssueSpend(
        this.redis,
        this.keys.spent(jobId, job.timestamp),
      );
      const budget = this.cfg.budget.perIssueUsd;
      const spentBefore = budget === undefined ? 0 : await spend.before();
      if (budget !== undefined && spentBefore > budget) {
        await new Promise<void>((r) => log.end(r));
        await this.failForBudget(cur, overBudget(spentBefore, budget), {
          baseSha,
          logPath,
        });
      }
      rmSync(files.status, { force: true });
      const diskBudget = this.cfg.limits.diskBytes;
      // Objects the agent's git adds to the shared store count as its files too.
      const objects =
        diskBudget === undefined
          ? []
          : await objectStoreBaseline(this.workspace);
      const agentStartedAt = Date.now();
      this.containment.willRun();
      const agent = new AgentProcess({
        command: this.cfg.agentCommand,
        cwd: this.cfg.worktreePath,
        env: {
          ...agentEnvironment(this.cfg, data, issueId, baseSha, files, marker),
          ...this.containment.agentEnv(),
        },
        log: stamped,
        echo: this.echo,
        onOutput: (chunk) => {
          limits.feed(chunk);
          usageScan.feed(chunk);
          // The budget is checked as the agent reports spend: stopped once the issue passed it.
          const now = usageScan.spend();
          if (
            budget !== undefined &&
            now !== undefined &&
            spentBefore + now > budget &&
            !usageScan.sessionEnded
          )
            cur.agent?.kill('budget');
        },
        render: new EventRenderer(),
        guard: this.guard,
        progressTimeoutMs: this.cfg.lease.progressTimeoutMs,
        killGraceMs: this.cfg.lease.killGraceMs,
        ...(this.cfg.agentUser ? { user: this.cfg.agentUser } : {}),
      });
      cur.agent = agent;
      // diskPerAgent: the agent's files are measured while it runs; past the budget it stops.
      let diskUsed: number | undefined;
      const diskWatch =
        diskBudget === undefined
          ? undefined
          : watchDisk({
              paths: agentDiskPaths(
                this.cfg.worktreePath,
                this.cfg.agentUser !== undefined,
              ),
              growth: objects,
              budget: diskBudget,
              intervalMs: this.cfg.limits.diskCheckMs,
              over: (bytes) => {
                diskUsed = bytes;
                agent.kill('disk');
              },
            });
      if (agent.pid !== undefined) {
        const rec: AgentRecord = {
          pid: agent.pid,
          marker,
          jobId,
          attempt,
          startedAt,
        };
        writeAgentRecord(this.agentRecordFile, rec, this.cfg.agentUser);
      }
      if (cur.leaseLost || this.host.shuttingDown())
        agent.kill(cur.leaseLost ? 'lease-lost' : 'shutdown', 0);
      const exit = await agent.exited;
      diskWatch?.stop();
      // Background processes it left (setsid, double forks) end with it, before the commit.
      await this.containment.sweep('agent exited');
      rmSync(this.agentRecordFile, { force: true });
      await new Promise<void>((r) => log.end(r));
      // Spent whatever becomes of the attempt: counted for the issue's budget before anything else.
      const usage = usageScan.finish();
      if (usage?.costUsd)
        await spend
          .add(usage.costUsd)
          .catch((err: Error) =>
            this.log('cannot record the issue spend', { error: err.message }),
          );
      const tampered =
        refsBefore && (await this.refuseTampering(refsBefore, baseSha));

      if (
        cur.leaseLost ||
        exit.killedFor === 'lease-lost' ||
        exit.killedFor === 'superseded'
      ) {
        throw new AttemptError(
          'lease-lost',
          `lease lost: ${this.cfg.agentId} no longer holds ${jobId}; its result is refused`,
        );
      }
      if (tampered) throw new AttemptError('result-refused', tampered);
      if (exit.killedFor === 'shutdown') {
        await job.moveToWait(token);
        await this.events.publish({
          type: 'release',
          jobId,
          attempt,
          agentId: this.cfg.agentId,
          at: Date.now(),
          reason: 'runner stopping',
        });
        throw new WaitingError();
      }
      // 127 from the shell: the command was not found. A missing agent program blocks this slot
      // (the job goes back unspent) instead of failing every issue it would take.
      if (exit.exitCode === 127 && exit.killedFor === undefined)
        await this.host
          .probeProgram()
          .catch((err: Error) =>
            handBackBlocked(this.handBack, cur, this.host.program, err),
          );
      const limit =
        exit.killedFor === undefined && !exit.spawnError
          ? usageLimitOf(exit.exitCode, files.status, limits)
          : undefined;
      if (limit) await handBackForLimit(this.handBack, cur, limit, logPath);
      // An agent that finished (exit 0) before the stop took effect keeps its work.
      if (exit.killedFor === 'budget' && exit.exitCode !== 0) {
        const work = await this.keepFailedWork(
          'budget',
          baseSha,
          issueId,
          attempt,
        );
        await this.failForBudget(
          cur,
          overBudget(spentBefore + (usage?.costUsd ?? 0), budget!),
          {
            baseSha,
            logPath,
            ...(usage ? { usage } : {}),
            ...(work ? { work } : {}),
          },
        );
      }
      let error: string | undefined;
      let kind: AttemptFailureKind = 'agent-exit';
      if (exit.spawnError) {
        kind = 'agent-spawn';
        error = `the agent command could not be started: ${exit.spawnError.message}`;
      } else if (exit.killedFor === 'disk') {
        kind = 'disk';
        if (this.cfg.agentUser) await clearAgentScratch(this.cfg.agentUser);
        await removeIgnoredSince(this.cfg.worktreePath, agentStartedAt, [
          ENV_FILE,
        ]).catch((err: unknown) =>
          this.log('cannot remove the ignored files the agent wrote', {
            error: coerceError(err).message,
          }),
        );
        error = `agent stopped: its files took ${Math.round((diskUsed ?? 0) / 2 ** 20)} MiB, past diskPerAgent (${Math.round(diskBudget! / 2 ** 20)} MiB)`;
      } else if (exit.killedFor === 'no-progress') {
        kind = 'no-progress';
        error = `agent killed: no output and no file change for ${this.cfg.lease.progressTimeoutMs} ms`;
      } else if (
        exit.exitCode !== 0 &&
        oomKillsBefore !== undefined &&
        (oomKillCount() ?? 0) > oomKillsBefore
      ) {
        kind = 'out-of-memory';
        error = outOfMemoryMessage();
      } else if (exit.exitCode === 127) {
        kind = 'agent-not-found';
        error = `agent command not found (exit 127): ${this.cfg.agentCommand}`;
      } else if (exit.exitCode !== 0)
        error = `agent exited with ${exit.exitCode === null ? `signal ${exit.signal}` : `code ${exit.exitCode}`}`;
      if (error && logError) error = `${error} (${logError})`;
      if (error) {
        const work = await this.keepFailedWork(kind, baseSha, issueId, attempt);
        await this.events.publish({
          type: 'attempt-failed',
          jobId,
          attempt,
          agentId: this.cfg.agentId,
          at: Date.now(),
          error,
          kind,
          exitCode: exit.exitCode,
          baseSha,
          logPath,
          ...(work ? { work } : {}),
          ...(usage ? { usage } : {}),
        });
        throw new AttemptError(kind, error, true);
      }
      const outcome = await this.workspace.commit(
        baseSha,
        `issue #${issueId}: ${data.title.split('\n')[0]}`,
        {
          name: this.cfg.agentId,
          email: `${this.cfg.agentId}@agent-supervisor.local`,
        },
      );
      const resultRef = outcome.commitSha
        ? await this.publishResult(cur, outcome.commitSha)
        : undefined;
      const finishedAt = Date.now();
      return {
        ...(usage ? { usage } : {}),
        ...(resultRef ? { resultRef } : {}),
        agentId: this.cfg.agentId,
        attempt,
        exitCode: 0,
        baseSha,
        ...outcome,
        durationMs: finishedAt - startedAt,
        logPath,
        startedAt,
        finishedAt,
        ...(logError ? { logError } : {}),
      };
    } catch (err) {
      if (
        err instanceof WaitingError ||
        err instanceof DelayedError ||
        err instanceof UnrecoverableError ||
        err instanceof RateLimitError
      )
        throw err;
      const e = coerceError(err);
      const reported = e instanceof AttemptError && e.reported;
      if (!cur.leaseLost && !reported) {
        // Failures of our own (git, disk) are reported like agent failures.
        await this.events
          .publish({
            type: 'attempt-failed',
            jobId,
            attempt,
            agentId: this.cfg.agentId,
            at: Date.now(),
            error: e.message,
            kind: e instanceof AttemptError ? e.kind : 'runner-error',
            exitCode: null,
            ...(logPath ? { logPath } : {}),
          })
          .catch(() => undefined);
      }
      throw e;
    } finally {
      await this.host.ended();
    }
  }

  /**
   * A failed agent's changes, committed on the slot branch (reset by the next job anyway), so a
   * reviewer can see what it did: shared git mode only (a remote runner's commit stays in its
   * clone). Never fails the report: without a commit the failure is reported as it is.
   */
  private async keepFailedWork(
    kind: AttemptFailureKind,
    baseSha: string,
    issueId: string,
    attempt: number,
  ): Promise<
    (Omit<CommitOutcome, 'commitSha'> & { commitSha: string }) | undefined
  > {
    if (this.cfg.git.mode !== 'shared') return undefined;
    if (
      !['agent-exit', 'no-progress', 'out-of-memory', 'budget'].includes(kind)
    )
      return undefined;
    try {
      const outcome = await this.workspace.commit(
        baseSha,
        `issue #${issueId}: failed attempt ${attempt} (work kept for review)`,
        {
          name: this.cfg.agentId,
          email: `${this.cfg.agentId}@agent-supervisor.local`,
        },
      );
      return outcome.commitSha
        ? { ...outcome, commitSha: outcome.commitSha }
        : undefined;
    } catch (err) {
      this.log("the failed attempt's work could not be committed", {
        error: coerceError(err).message,
      });
      return undefined;
    }
  }

  /**
   * The issue spent more than `budget.perIssue`: the attempt fails for good (another attempt would
   * spend more), with the kind `budget`; BullMQ does not retry an UnrecoverableError.
   */
  private async failForBudget(
    cur: Current,
    error: string,
    extra: {
      baseSha: string;
      logPath: string;
      usage?: AgentUsage;
      work?: {
        commitSha: string;
        filesChanged: number;
        insertions: number;
        deletions: number;
      };
    },
  ): Promise<never> {
    await this.events.publish({
      type: 'attempt-failed',
      jobId: cur.job.id!,
      attempt: cur.attempt,
      agentId: this.cfg.agentId,
      at: Date.now(),
      error,
      kind: 'budget',
      exitCode: null,
      ...extra,
    });
    this.log('budget: the issue passed budget.perIssue; attempt failed', {
      jobId: cur.job.id,
      error,
    });
    throw new UnrecoverableError(error);
  }

  /**
   * Refs outside the agent's branch changed during its run: put back, reported, and the
   * attempt's result refused (the returned message); undefined when nothing was touched.
   */
  private async refuseTampering(
    before: Map<string, string>,
    baseSha: string,
  ): Promise<string | undefined> {
    const watch = this.refWatch!;
    const changes = await watch.changes(
      before,
      await watch.head(this.cfg.worktreePath),
      baseSha,
    );
    if (!changes.length) return undefined;
    const failed = await watch.repair(changes);
    this.log(
      'refs outside the agent branch were changed: repaired, result refused',
      { changes, notRepaired: failed },
    );
    return `refs outside ${this.cfg.branch} were changed during the agent's run (${describeChanges(changes)}); ${failed.length ? `repaired except ${failed.join(', ')}` : 'repaired'}; the result is refused`;
  }

  /**
   * Remote mode: pushes the result commit to its result ref. An unreachable remote is retried
   * while the lease holds; if it stays away, the job goes back to the queue (no attempt spent).
   */
  private async publishResult(
    cur: Current,
    commitSha: string,
  ): Promise<string | undefined> {
    if (!this.workspace.publish) return undefined;
    const ref = resultRefFor(cur.job.id!, cur.attempt);
    for (let i = 0, delay = 500; ; i++, delay *= 2) {
      if (cur.leaseLost)
        throw new AttemptError(
          'lease-lost',
          `lease lost: ${this.cfg.agentId} no longer holds ${cur.job.id}; its result is refused`,
        );
      try {
        return await this.workspace.publish(commitSha, ref, {
          jobId: cur.job.id!,
          token: cur.token,
        });
      } catch (err) {
        if (!(err instanceof GitRemoteError)) throw err;
        if (err.kind === 'rejected')
          throw new Error(`the result could not be published: ${err.message}`);
        if (i >= 3) await this.handBackForRemote(cur, err);
        this.log('push of the result failed; retrying', {
          jobId: cur.job.id,
          error: err.message,
        });
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /**
   * A foreign job the recorder has not adopted yet (the supervisor is down or slow): it goes back
   * to the queue for a moment, so it never runs under an issue id that is not its own.
   */
  private async handBackUnadopted(cur: Current): Promise<never> {
    const jobId = cur.job.id!;
    if (this.host.shuttingDown()) {
      await cur.job.moveToWait(cur.token);
      throw new WaitingError();
    }
    this.log('foreign job not adopted yet; handed back for a moment', {
      jobId,
    });
    await cur.job.moveToDelayed(Date.now() + ADOPTION_RETRY_MS, cur.token);
    throw new DelayedError();
  }

  /** The git remote is away: stop taking jobs, put this one back without spending an attempt. */
  private handBackForRemote(cur: Current, err: GitRemoteError): Promise<never> {
    return handBackBlocked(this.handBack, cur, this.host.remote, err);
  }

  private get handBack() {
    return {
      cfg: this.cfg,
      redis: this.redis,
      queue: this.host.queue,
      keys: this.keys,
      events: this.events,
      log: this.log,
    };
  }

  /** BullMQ could not renew the job's lock: the agent dies at once, its result is refused. */
  onLeaseLost(cur: Current): void {
    if (cur.leaseLost) return;
    cur.leaseLost = true;
    this.log('lease lost: killing the agent, its result will be refused', {
      jobId: cur.job.id,
    });
    cur.agent?.kill('lease-lost', 0);
    void this.events
      .publish({
        type: 'lease-lost',
        jobId: cur.job.id!,
        attempt: cur.attempt,
        agentId: this.cfg.agentId,
        at: Date.now(),
      })
      .catch(() => undefined);
  }
}
