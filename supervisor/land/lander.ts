import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Context } from '../context.js';
import { SupervisorError, coerceError } from '../errors.js';
import { withChange } from '../store/history.js';
import type { Issue } from '../store/issues.js';
import { redactSecrets } from '../../contract/errors.js';
import { BaseFetcher, fetchBase, type Base } from './base.js';
import { buildCandidate, type Strategy } from './candidate.js';
import { runCheck } from './check.js';
import { baseRef, landGit, revParse, type LandGit } from './git.js';
import { LandingStore, type Landing } from './landings.js';
import { LandLock } from './lock.js';
import { refreshMergeStates } from './merge-state.js';

type Log = (msg: string, fields?: Record<string, unknown>) => void;

/** What one landing came to. */
export interface LandOutcome {
  issueId: number;
  /** merged; conflict / check-failed (held or requeued); refused (nothing moved); would-* for --dry-run. */
  result:
    | 'merged'
    | 'conflict'
    | 'check-failed'
    | 'requeued'
    | 'refused'
    | 'would-land'
    | 'would-conflict';
  attempt?: number;
  landedSha?: string;
  conflictFiles?: string[];
  checkLog?: string;
  error?: string;
  /** Times the base moved under this landing and it was redone on the new tip. */
  redone: number;
}

export interface LanderHooks {
  log?: Log;
  /** The landing slot's environment for land.check (ports, Redis DB, database). */
  checkEnv?: () => Promise<Record<string, string>>;
  /** Sends an issue back to an agent after a conflict or a failed check (land.onConflict). */
  requeue?: (issue: Issue, landing: Landing) => Promise<boolean>;
}

const MAX_REDO = 10;

/**
 * The merge queue: lands done issues one at a time on the base branch. Per issue: the landing
 * row first (SQLite), then git — the candidate commit on the current tip, land.check on exactly
 * its tree in the landing worktree, the base moved by compare-and-swap — then one SQLite
 * transaction. A base that moved meanwhile means the issue is redone on the new tip.
 */
export class Lander {
  readonly git: LandGit;
  readonly landings: LandingStore;
  /** Fetches a remote-tracking base (before each land() call; on a timer in the running supervisor). */
  readonly fetcher: BaseFetcher;
  private readonly lock: LandLock;
  private readonly log: Log;
  /** Per land() call: the commit it moved the base to last (saves a rev-parse per landing). */
  private landedTip: string | undefined;
  /** Per land() call: the base's ref and which worktree has it checked out. */
  private readonly memo = new Map<string, Promise<string | undefined>>();

  constructor(
    private readonly ctx: Context,
    private readonly hooks: LanderHooks = {},
  ) {
    this.git = landGit(ctx.paths.root);
    this.landings = new LandingStore(ctx.db);
    this.lock = new LandLock(ctx.paths.runDir);
    this.log = hooks.log ?? (() => undefined);
    this.fetcher = new BaseFetcher(ctx, this.log);
  }

  get worktreePath(): string {
    return join(this.ctx.paths.worktreesDir, 'land');
  }

  /** Lands the given issues in order (`all`: every done issue by id). */
  async land(
    which: number[] | 'all',
    opts: { dryRun?: boolean; lockTimeoutMs?: number } = {},
  ): Promise<LandOutcome[]> {
    await this.lock.acquire(opts.lockTimeoutMs ?? 600_000);
    this.memo.clear();
    this.landedTip = undefined;
    try {
      // A remote base lands onto what the remote has now, not what was fetched a while ago.
      await this.fetcher.refresh(true);
      await this.repairLocked();
      const ids =
        which === 'all'
          ? this.ctx.issues.list({ status: 'done' }).map((i) => i.id)
          : which;
      for (const id of ids) {
        const i = this.ctx.issues.require(id);
        if (i.status !== 'done')
          throw new SupervisorError(
            'ERR_SUP_ISSUE_STATE',
            `issue #${id} is ${i.status}; only done issues land`,
            {
              hint:
                i.status === 'merged'
                  ? 'it is in the base branch already'
                  : 'wait until an agent finished it (supervisor issue list), or retry it: supervisor issue retry ' +
                    id,
            },
          );
      }
      const out: LandOutcome[] = [];
      for (const id of ids) {
        out.push(
          opts.dryRun ? await this.dryRunOne(id) : await this.landOne(id),
        );
      }
      if (!opts.dryRun) await refreshMergeStates(this.ctx).catch(() => 0);
      return out;
    } finally {
      this.lock.release();
    }
  }

  /** Finishes or undoes landings a killed lander left half done (git says how far it got). */
  async repair(): Promise<number> {
    if (!this.lock.tryAcquire()) return 0;
    try {
      return await this.repairLocked();
    } finally {
      this.lock.release();
    }
  }

  private async repairLocked(): Promise<number> {
    let n = 0;
    const ref = await baseRef(this.git, this.ctx.baseBranch);
    for (const l of this.landings.unfinished()) {
      const tip = await revParse(this.git, ref);
      const landed =
        l.candidateSha !== null &&
        tip !== undefined &&
        (
          await this.git.run([
            'merge-base',
            '--is-ancestor',
            l.candidateSha,
            tip,
          ])
        ).code === 0;
      if (landed) {
        this.finishMerged(l, l.candidateSha!, 'landed before a restart');
        this.log('landing: finished after a restart', {
          issueId: l.issueId,
          landed: l.candidateSha,
        });
      } else {
        withChange(
          this.ctx.db,
          {
            actor: 'lander',
            reason: `landing attempt ${l.attempt} was interrupted before the base moved; it lands again`,
          },
          () => {
            this.landings.finish(l.id, 'interrupted', {
              error: 'interrupted (the lander stopped before the base moved)',
            });
            const i = this.ctx.issues.get(l.issueId);
            if (i?.status === 'landing')
              this.ctx.issues.update(l.issueId, { status: 'done' });
          },
        );
        this.log('landing: interrupted attempt undone', {
          issueId: l.issueId,
        });
      }
      n += 1;
    }
    // A landing status with no landing row in flight (killed between the two writes).
    for (const i of this.ctx.issues.list({ status: 'landing' }))
      withChange(
        this.ctx.db,
        { actor: 'lander', reason: 'no landing in flight' },
        () => this.ctx.issues.update(i.id, { status: 'done' }),
      );
    return n;
  }

  private cfg() {
    return this.ctx.config.land;
  }

  private async dryRunOne(id: number): Promise<LandOutcome> {
    const issue = this.ctx.issues.require(id);
    const tip = await this.tip();
    if (!issue.commit) return { issueId: id, result: 'would-land', redone: 0 };
    const c = await buildCandidate(
      this.git,
      () => this.worktree(),
      this.cfg().strategy as Strategy,
      tip,
      issue.commit,
      issue,
    );
    return c.ok
      ? { issueId: id, result: 'would-land', redone: 0 }
      : {
          issueId: id,
          result: 'would-conflict',
          conflictFiles: c.conflictFiles,
          redone: 0,
        };
  }

  private async baseRef(): Promise<string> {
    return (await this.fetcher.resolve()).ref;
  }

  private async tip(): Promise<string> {
    const ref = await this.baseRef();
    const tip = await revParse(this.git, ref);
    if (!tip)
      throw new SupervisorError(
        'ERR_SUP_GIT',
        `the base branch ${this.ctx.baseBranch} does not exist`,
        {
          hint: 'set "baseBranch" in supervisor.config.json to a branch that exists',
        },
      );
    return tip;
  }

  private async landOne(id: number): Promise<LandOutcome> {
    const issue = this.ctx.issues.require(id);
    const cfg = this.cfg();
    // The commit this call landed last is the tip, unless someone moved the base since: then
    // the compare-and-swap fails and the landing is redone on the tip read from git.
    const tip0 = this.landedTip ?? (await this.tip());
    this.landedTip = undefined;
    // A dirty checkout of the base is refused before anything changes.
    const holder = await this.checkoutOf(this.ctx.baseBranch);
    if (holder) await this.requireClean(holder, id);
    const attempt = issue.landAttempts + 1;
    const landing = withChange(
      this.ctx.db,
      {
        actor: 'lander',
        reason: `landing attempt ${attempt} onto ${this.ctx.baseBranch} @ ${tip0.slice(0, 12)} (${cfg.strategy})`,
      },
      () => {
        const l = this.landings.start({
          issueId: id,
          attempt,
          strategy: cfg.strategy,
          baseBranch: this.ctx.baseBranch,
          baseBefore: tip0,
          sourceSha: issue.commit ?? tip0,
        });
        this.ctx.issues.update(id, {
          status: 'landing',
          landAttempts: attempt,
        });
        return l;
      },
    );
    try {
      return await this.attempt(issue, landing, tip0);
    } catch (err) {
      // Nothing moved (the base moves last): the issue is done again, the attempt says why.
      const e = coerceError(err);
      withChange(
        this.ctx.db,
        { actor: 'lander', reason: `landing failed: ${e.message}` },
        () => {
          this.landings.finish(landing.id, 'refused', { error: e.message });
          this.ctx.issues.update(id, { status: 'done' });
        },
      );
      throw err;
    }
  }

  private async attempt(
    issue: Issue,
    landing: Landing,
    firstTip: string,
  ): Promise<LandOutcome> {
    const cfg = this.cfg();
    const id = issue.id;
    if (!issue.commit) {
      this.finishMerged(
        landing,
        null,
        'nothing to land (the agent changed nothing)',
      );
      return {
        issueId: id,
        result: 'merged',
        attempt: landing.attempt,
        redone: 0,
      };
    }
    for (let redone = 0; redone < MAX_REDO; redone++) {
      // The tip this landing was recorded on; after the base moved, the new one.
      const tip = redone === 0 ? firstTip : await this.tip();
      const c = await buildCandidate(
        this.git,
        () => this.worktree(),
        cfg.strategy as Strategy,
        tip,
        issue.commit,
        issue,
      );
      if (!c.ok)
        return this.heldOrRequeued(issue, landing, 'conflict', {
          conflictFiles: c.conflictFiles,
          redone,
        });
      this.landings.setCandidate(landing.id, tip, c.sha);
      if (cfg.check) {
        const wt = await this.worktree();
        await wt.ok(['checkout', '--quiet', '-f', '--detach', c.sha]);
        await wt.ok(['clean', '-fdq']);
        const res = await runCheck({
          command: cfg.check,
          cwd: wt.dir,
          timeoutMs: cfg.checkTimeout,
          slotKey: `${this.ctx.config.prefix}:${this.ctx.queueName}:land`,
          hide: this.ctx.paths.stateDir,
          logFile: join(
            this.ctx.paths.logDir,
            'land',
            `issue-${id}-landing-${landing.attempt}.log`,
          ),
          env: {
            ...(await this.hooks.checkEnv?.()),
            LAND_ISSUE_ID: String(id),
            LAND_BASE_BRANCH: this.ctx.baseBranch,
            LAND_BASE_SHA: tip,
            LAND_CANDIDATE_SHA: c.sha,
          },
        });
        if (!res.passed)
          return this.heldOrRequeued(issue, landing, 'check-failed', {
            checkLog: res.tail,
            redone,
          });
      }
      if (await this.moveBase(tip, c.sha, id)) this.landedTip = c.sha;
      else {
        this.log('landing: the base moved meanwhile; redoing on the new tip', {
          issueId: id,
        });
        continue;
      }
      let pushError: string | undefined;
      const base = await this.fetcher.resolve();
      if (cfg.push && cfg.push !== base.remote?.name) {
        const r = await this.git.run([
          'push',
          '--quiet',
          '--no-verify',
          cfg.push,
          `${c.sha}:refs/heads/${base.remote?.branch ?? this.ctx.baseBranch}`,
        ]);
        if (r.code !== 0) {
          pushError = `push to ${cfg.push} failed: ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`;
          this.log(`landing: ${pushError}`, { issueId: id });
        }
      }
      this.finishMerged(
        landing,
        c.sha,
        `landed as ${c.sha.slice(0, 12)} on ${this.ctx.baseBranch}${redone ? ` (redone ${redone}× after the base moved)` : ''}`,
        pushError,
      );
      return {
        issueId: id,
        result: 'merged',
        attempt: landing.attempt,
        landedSha: c.sha,
        redone,
        ...(pushError ? { error: pushError } : {}),
      };
    }
    throw new SupervisorError(
      'ERR_SUP_LAND_REFUSED',
      `the base branch ${this.ctx.baseBranch} kept moving: issue #${id} was redone ${MAX_REDO} times`,
      { hint: 'run supervisor land again when the base is quieter' },
    );
  }

  private finishMerged(
    landing: Landing,
    sha: string | null,
    reason: string,
    error?: string,
  ): void {
    withChange(this.ctx.db, { actor: 'lander', reason }, () => {
      this.landings.finish(landing.id, 'merged', {
        landedSha: sha,
        error: error ?? null,
      });
      this.ctx.issues.update(landing.issueId, {
        status: 'merged',
        landedSha: sha,
        behind: 0,
        conflictFiles: [],
        error: error ?? null,
      });
    });
  }

  private async heldOrRequeued(
    issue: Issue,
    landing: Landing,
    kind: 'conflict' | 'check-failed',
    f: { conflictFiles?: string[]; checkLog?: string; redone: number },
  ): Promise<LandOutcome> {
    const cfg = this.cfg();
    const why =
      kind === 'conflict'
        ? `conflicts with ${this.ctx.baseBranch} in ${f.conflictFiles!.join(', ')}`
        : `land.check failed: ${f.checkLog!.trim().split('\n').slice(-1)[0] ?? ''}`;
    withChange(this.ctx.db, { actor: 'lander', reason: why }, () => {
      this.landings.finish(landing.id, kind, {
        ...(f.conflictFiles ? { conflictFiles: f.conflictFiles } : {}),
        checkLog: f.checkLog ?? null,
        error: why,
      });
      this.ctx.issues.update(issue.id, {
        status: kind,
        error: why,
        ...(f.conflictFiles ? { conflictFiles: f.conflictFiles } : {}),
      });
    });
    const policy = kind === 'conflict' ? cfg.onConflict : cfg.onCheckFailure;
    let requeued = false;
    if (
      policy === 'requeue' &&
      issue.requeues < cfg.maxRequeues &&
      this.hooks.requeue
    )
      requeued = await this.hooks.requeue(
        this.ctx.issues.require(issue.id),
        this.landings.get(issue.id, landing.attempt)!,
      );
    return {
      issueId: issue.id,
      result: requeued ? 'requeued' : kind,
      attempt: landing.attempt,
      redone: f.redone,
      ...(f.conflictFiles ? { conflictFiles: f.conflictFiles } : {}),
      ...(f.checkLog !== undefined ? { checkLog: f.checkLog } : {}),
      error: why,
    };
  }

  /**
   * Moves the base from `tip` to `sha`, only if it is still at `tip`. A base checked out in a
   * worktree (the user's) is fast-forwarded there, so its files follow; otherwise the ref moves
   * by compare-and-swap. False: it moved meanwhile (redo on the new tip).
   */
  private async moveBase(
    tip: string,
    sha: string,
    id: number,
  ): Promise<boolean> {
    const base = await this.fetcher.resolve();
    if (base.remote) return this.pushBase(base, tip, sha, id);
    const ref = base.ref;
    const holder = await this.checkoutOf(this.ctx.baseBranch);
    if (!holder) {
      const r = await this.git.run(['update-ref', ref, sha, tip]);
      return r.code === 0;
    }
    const wt = landGit(holder, 600_000);
    // One git status says both: the checkout is clean, and still at the tip this landing built on.
    if ((await this.requireClean(holder, id)) !== tip) return false;
    const r = await wt.run(['merge', '--ff-only', '--quiet', sha]);
    if (r.code === 0) return true;
    if ((await revParse(wt, 'HEAD')) !== tip) return false;
    throw new SupervisorError(
      'ERR_SUP_LAND_REFUSED',
      `cannot fast-forward ${this.ctx.baseBranch} in ${holder}: ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`,
      {
        hint: `move or commit the files git names in ${holder}, then run supervisor land ${id} again`,
      },
    );
  }

  /**
   * A remote-tracking base moves on the remote: a push leased on the tip this landing built on
   * (the remote's compare-and-swap). Refused because the remote moved: fetched, and false (redo
   * on the new tip). The tracking ref follows a push that went through.
   */
  private async pushBase(
    base: Base,
    tip: string,
    sha: string,
    id: number,
  ): Promise<boolean> {
    const { name, branch } = base.remote!;
    const r = await this.git.run([
      'push',
      '--quiet',
      '--no-verify',
      `--force-with-lease=refs/heads/${branch}:${tip}`,
      name,
      `${sha}:refs/heads/${branch}`,
    ]);
    if (r.code === 0) {
      await this.git.run(['update-ref', base.ref, sha]);
      return true;
    }
    if (/stale info|rejected|non-fast-forward|fetch first/i.test(r.stderr)) {
      await fetchBase(this.git, base);
      return false;
    }
    throw new SupervisorError(
      'ERR_SUP_LAND_REFUSED',
      `cannot push ${branch} to ${name}: ${redactSecrets(r.stderr.trim().split('\n').slice(-2).join(' | '))}`,
      {
        hint: `check that ${name} answers and accepts pushes, then run supervisor land ${id} again; nothing was changed`,
      },
    );
  }

  /** The worktree that has `branch` checked out, if any (once per land() call). */
  private checkoutOf(branch: string): Promise<string | undefined> {
    let p = this.memo.get(`checkout:${branch}`);
    if (!p) {
      p = this.findCheckout(branch);
      this.memo.set(`checkout:${branch}`, p);
    }
    return p;
  }

  private async findCheckout(branch: string): Promise<string | undefined> {
    const out = await this.git.ok(['worktree', 'list', '--porcelain']);
    let path: string | undefined;
    for (const line of out.split('\n')) {
      if (line.startsWith('worktree ')) path = line.slice('worktree '.length);
      else if (line === `branch refs/heads/${branch}`) return path;
    }
    return undefined;
  }

  /** Refuses a checkout with uncommitted changes to tracked files; returns its HEAD commit. */
  private async requireClean(
    dir: string,
    id: number,
  ): Promise<string | undefined> {
    const r = await landGit(dir, 120_000).run([
      'status',
      '--porcelain=v2',
      '--branch',
      '--untracked-files=no',
    ]);
    if (r.code !== 0)
      throw new SupervisorError(
        'ERR_SUP_GIT',
        `git status failed in ${dir}: ${r.stderr.trim()}`,
      );
    let head: string | undefined;
    const changed: string[] = [];
    for (const line of r.stdout.split('\n')) {
      if (line.startsWith('# branch.oid ')) head = line.slice(13).trim();
      else if (line && !line.startsWith('#')) changed.push(changedPath(line));
    }
    if (changed.length === 0) return head;
    const files = changed.slice(0, 5).join(', ');
    throw new SupervisorError(
      'ERR_SUP_LAND_REFUSED',
      `${this.ctx.baseBranch} is checked out in ${dir} with uncommitted changes (${files}); landing would have to move it under them`,
      {
        hint: `commit or stash them (git -C ${dir} stash), or check out another branch there, then run supervisor land ${id} again; nothing was changed`,
      },
    );
  }

  /** The landing worktree (detached; never the user's checkout), created on first use. */
  async worktree(): Promise<LandGit> {
    const path = this.worktreePath;
    if (!existsSync(join(path, '.git'))) {
      await this.git.run(['worktree', 'prune']);
      await this.git.ok([
        'worktree',
        'add',
        '--quiet',
        '--force',
        '--detach',
        path,
        await this.tip(),
      ]);
    }
    return landGit(path, 600_000);
  }
}

/** The path of a `git status --porcelain=v2` entry (ordinary `1`, renamed `2`, unmerged `u`). */
function changedPath(line: string): string {
  const fields = line.split(' ');
  const skip = line.startsWith('2 ') ? 9 : line.startsWith('u ') ? 10 : 8;
  return fields.slice(skip).join(' ').split('\t')[0]!;
}
