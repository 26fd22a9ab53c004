import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  RESULT_REF_PREFIX,
  parseResultRef,
  resultRefFor,
  type JobResult,
} from '../contract/job.js';
import { redactSecrets } from './errors.js';
import { runGit } from '../git/runner.js';
import { RefFiles } from '../git/ref-files.js';

/**
 * The supervisor's side of remote runners' result refs.
 *
 * Where runners push: by default a bare repository the supervisor owns,
 * `.supervisor/results.git`, whose object store borrows this repository's (alternates), so a
 * push carries only the new objects. The dashboard serves it for `git push` with one rule: only
 * *new* refs under `refs/supervisor/results/` (see dashboard/git-http.ts). The user's own
 * repository never receives objects or refs from the network; only the recorder copies a
 * verified result into it. When `remoteUrl` is set (the team's origin), runners push there and
 * the recorder fetches and deletes the ref there.
 */
export interface ResultRefsOptions {
  repoRoot: string;
  gitCommonDir: string;
  stateDir: string;
  /** The remote runners push to when it is not ours (e.g. the origin's URL). */
  remoteUrl?: string | undefined;
  log: (msg: string, fields?: Record<string, unknown>) => void;
}

/** A result that cannot be published: the attempt fails with this message. */
export class ResultRefError extends Error {}

const INCOMING = 'refs/supervisor/incoming/';

/** git through the one git runner; errors keep git's last lines, without credentials. */
async function git(
  cwd: string,
  args: string[],
  timeoutMs = 120_000,
): Promise<string> {
  try {
    return (await runGit(args, { cwd, timeoutMs })).stdout.trim();
  } catch (err) {
    throw new Error(
      redactSecrets(
        (err as Error).message.trim().split('\n').slice(-3).join(' | '),
      ),
    );
  }
}

export class ResultRefs {
  readonly resultsRepo: string;
  private files: RefFiles | undefined;

  constructor(private readonly o: ResultRefsOptions) {
    this.resultsRepo = join(o.stateDir, 'results.git');
  }

  /** Where runners push (and the recorder fetches from). */
  get source(): string {
    return this.o.remoteUrl ?? this.resultsRepo;
  }

  get local(): boolean {
    return this.o.remoteUrl === undefined;
  }

  /** Creates the results repository (idempotent). */
  async ensure(): Promise<void> {
    if (!this.local) return;
    if (!existsSync(join(this.resultsRepo, 'HEAD'))) {
      mkdirSync(this.resultsRepo, { recursive: true });
      await git(this.resultsRepo, [
        'init',
        '--quiet',
        '--bare',
        this.resultsRepo,
      ]);
    }
    mkdirSync(join(this.resultsRepo, 'objects', 'info'), { recursive: true });
    writeFileSync(
      join(this.resultsRepo, 'objects', 'info', 'alternates'),
      `${join(this.o.gitCommonDir, 'objects')}\n`,
    );
    for (const [k, v] of [
      ['http.receivepack', 'true'],
      ['http.uploadpack', 'false'],
      ['receive.fsckObjects', 'true'],
      ['receive.denyDeletes', 'true'],
      ['receive.denyNonFastForwards', 'true'],
      ['core.logAllRefUpdates', 'false'],
      // gc here would repack borrowed objects; results refs are short-lived.
      ['gc.auto', '0'],
    ] as const) {
      await git(this.resultsRepo, ['config', k, v]);
    }
  }

  /**
   * Copies a completed job's result into this repository and checks it: the ref is the one of
   * this (job, attempt), it exists, it is exactly the reported commit, and that commit descends
   * from the reported base. Throws ResultRefError (the attempt fails) otherwise. Returns the
   * incoming ref that keeps the objects reachable until the issue branch points at them.
   */
  async take(jobId: string, res: JobResult): Promise<string> {
    const ref = res.resultRef!;
    const expected = resultRefFor(jobId, res.attempt);
    if (ref !== expected)
      throw new ResultRefError(
        `result ref ${JSON.stringify(ref)} is not the ref of ${jobId} attempt ${res.attempt} (${expected}); the result is refused`,
      );
    if (!res.commitSha)
      throw new ResultRefError(
        `result ref ${ref} was reported without a commit`,
      );
    const incoming = INCOMING + ref.slice(RESULT_REF_PREFIX.length);
    let lastError: Error | undefined;
    for (let i = 0; i < 3; i++) {
      try {
        await git(this.o.repoRoot, [
          'fetch',
          '--quiet',
          '--no-tags',
          '--no-write-fetch-head',
          this.source,
          `+${ref}:${incoming}`,
        ]);
        lastError = undefined;
        break;
      } catch (err) {
        lastError = err as Error;
        if (/couldn't find remote ref/i.test(lastError.message)) {
          throw new ResultRefError(
            `result ref ${ref} is missing from ${this.shownSource}: the runner reported commit ${res.commitSha.slice(0, 12)} but never pushed it`,
          );
        }
        await new Promise((r) => setTimeout(r, 500 * 2 ** i));
      }
    }
    if (lastError)
      throw new ResultRefError(
        `result ref ${ref} could not be fetched from ${this.shownSource}: ${lastError.message}`,
      );
    const got = await git(this.o.repoRoot, [
      'rev-parse',
      '--verify',
      `${incoming}^{commit}`,
    ]);
    if (got !== res.commitSha) {
      await this.dropIncoming(incoming);
      throw new ResultRefError(
        `result ref ${ref} points to ${got.slice(0, 12)}, not to the reported commit ${res.commitSha.slice(0, 12)}; the result is refused`,
      );
    }
    try {
      await git(this.o.repoRoot, [
        'merge-base',
        '--is-ancestor',
        res.baseSha,
        got,
      ]);
    } catch {
      await this.dropIncoming(incoming);
      throw new ResultRefError(
        `result commit ${got.slice(0, 12)} does not descend from its base ${res.baseSha.slice(0, 12)}; the result is refused`,
      );
    }
    return incoming;
  }

  async dropIncoming(incoming: string): Promise<void> {
    await git(this.o.repoRoot, ['update-ref', '-d', incoming]).catch(
      () => undefined,
    );
  }

  /** Deletes a result ref where runners pushed it (after publishing, or to refuse it). */
  async drop(ref: string): Promise<void> {
    if (!parseResultRef(ref)) return;
    if (this.local) await git(this.resultsRepo, ['update-ref', '-d', ref]);
    else
      await git(this.o.repoRoot, [
        'push',
        '--quiet',
        '--no-verify',
        this.source,
        `:${ref}`,
      ]);
  }

  /** Result refs waiting where runners push: `{ ref, sha }`. */
  async list(): Promise<Array<{ ref: string; sha: string }>> {
    // Every reconcile asks, mostly of an empty directory: ours is read from its files (a fork of
    // the supervisor and a git per round otherwise), git answers what is not plain.
    if (this.local) {
      this.files ??= new RefFiles(this.resultsRepo);
      let refs: Map<string, string> | undefined;
      try {
        refs = this.files.read([RESULT_REF_PREFIX.slice(0, -1)]);
      } catch {
        refs = undefined; // a file went away while being read
      }
      if (refs)
        return [...refs]
          .map(([ref, sha]) => ({ ref, sha }))
          .filter((r) => parseResultRef(r.ref) !== undefined)
          .sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
    }
    const out = this.local
      ? await git(this.resultsRepo, [
          'for-each-ref',
          '--format=%(refname) %(objectname)',
          RESULT_REF_PREFIX,
        ])
      : await git(this.o.repoRoot, [
          'ls-remote',
          this.source,
          `${RESULT_REF_PREFIX}*`,
        ]);
    return out
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [a, b] = l.split(/\s+/);
        return this.local ? { ref: a!, sha: b! } : { ref: b!, sha: a! };
      })
      .filter((r) => parseResultRef(r.ref) !== undefined);
  }

  private get shownSource(): string {
    return this.local ? 'the results repository' : redactSecrets(this.source);
  }
}
