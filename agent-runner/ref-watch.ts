import { baseRefOf } from '../contract/job.js';
import { gitAt } from '../git/runner.js';
import { existsSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import { RefFiles } from '../git/ref-files.js';
import { headFromFiles } from './workspace.js';

/**
 * Refs outside the agent's own branch, watched over the agent's run. An agent produces commits
 * on its slot's branch; it never needs to move the base branch, an `issue/*` branch, or create a
 * tag named like a branch the supervisor manages (`git log issue/7` prefers such a tag over the
 * branch). Any of that during its run is tampering: the runner puts each ref back where it was
 * (compare-and-swap, so a ref moved again since is left alone), refuses the attempt's result and
 * says what was changed. Where the git directory is read-only to the agent (Docker runtime)
 * nothing of this can happen; the process runtime relies on this check.
 */
export interface RefChange {
  ref: string;
  before: string | undefined;
  after: string | undefined;
}

type Snapshot = Map<string, string>;

/** Git through the one git runner (no hooks, fsmonitor or configured programs; a time limit). */
function git(repo: string, args: string[]): Promise<string> {
  return gitAt(repo, { timeoutMs: 60_000 }).raw(args);
}

export class RefWatch {
  constructor(
    private readonly repo: string,
    private readonly baseBranch: string,
    private readonly ownBranch: string,
  ) {}

  private files: RefFiles | undefined | null = null;

  /**
   * The refs an agent must not change: the base branch, `issue/*` and every tag. Read from git's
   * files where they are plain (`RefFiles`), else by `git for-each-ref`.
   */
  async snapshot(): Promise<Snapshot> {
    const names = [baseRefOf(this.baseBranch), 'refs/heads/issue', 'refs/tags'];
    if (this.files === null) {
      const dotGit = join(this.repo, '.git');
      this.files =
        existsSync(dotGit) && lstatSync(dotGit).isDirectory()
          ? new RefFiles(dotGit)
          : undefined;
    }
    let fromFiles: Snapshot | undefined;
    try {
      fromFiles = this.files?.read(names);
    } catch {
      fromFiles = undefined; // a file went away while being read: git answers
    }
    if (fromFiles) return fromFiles;
    const out = await git(this.repo, [
      'for-each-ref',
      '--format=%(refname) %(objectname)',
      ...names,
    ]);
    const snap: Snapshot = new Map();
    for (const line of out.split('\n')) {
      const i = line.lastIndexOf(' ');
      if (i > 0) snap.set(line.slice(0, i), line.slice(i + 1));
    }
    return snap;
  }

  /**
   * What changed since `before` that the agent had no business changing. `issue/*` branches the
   * supervisor creates meanwhile (other slots' results) are not changes, nor is deleting one
   * whose commit is in the base (`cleanup --merged`); moving one, or deleting one whose work is
   * nowhere else, is. The base branch may move forward meanwhile (the user, a landing) unless
   * the new tip contains this agent's own commits; any other move is a change.
   */
  async changes(
    before: Snapshot,
    agentHead: string | undefined,
    baseSha: string,
  ): Promise<RefChange[]> {
    const after = await this.snapshot();
    const out: RefChange[] = [];
    const baseRef = baseRefOf(this.baseBranch);
    for (const ref of new Set([...before.keys(), ...after.keys()])) {
      const b = before.get(ref);
      const a = after.get(ref);
      if (a === b) continue;
      if (ref.startsWith('refs/tags/')) {
        if (this.managedTag(ref)) out.push({ ref, before: b, after: a });
        continue;
      }
      if (ref === baseRef) {
        if (
          !b ||
          !a ||
          !(await this.isAncestor(b, a)) ||
          (agentHead !== undefined &&
            agentHead !== baseSha &&
            (await this.isAncestor(agentHead, a)))
        )
          out.push({ ref, before: b, after: a });
        continue;
      }
      // refs/heads/issue/*: created by the supervisor, never moved or deleted by anyone but
      // `supervisor cleanup --merged`, which deletes a branch whose work is in the base: a
      // deleted branch whose commit the base (as it is now) contains lost nothing.
      if (b === undefined) continue;
      const base = after.get(baseRef);
      if (
        a === undefined &&
        base !== undefined &&
        (await this.isAncestor(b, base))
      )
        continue;
      out.push({ ref, before: b, after: a });
    }
    // Its own branch must build on the job's base: another slot's agent may have swapped it.
    if (agentHead && !(await this.isAncestor(baseSha, agentHead)))
      out.push({
        ref: `refs/heads/${this.ownBranch}`,
        before: baseSha,
        after: agentHead,
      });
    return out;
  }

  /** Tags named like a branch the supervisor manages shadow that branch in `git log <name>`. */
  private managedTag(ref: string): boolean {
    const name = ref.slice('refs/tags/'.length);
    return (
      name === this.baseBranch ||
      /^issue\/\d+$/.test(name) ||
      /^agent\/\d{3}$/.test(name) ||
      name === this.ownBranch ||
      name.startsWith('supervisor/')
    );
  }

  private async isAncestor(a: string, b: string): Promise<boolean> {
    // A commit is its own ancestor (the agent left its branch at the base): no git needed.
    if (a === b) return true;
    try {
      await git(this.repo, ['merge-base', '--is-ancestor', a, b]);
      return true;
    } catch {
      return false;
    }
  }

  /** Puts each ref back where it was, if it is still where the agent left it. */
  async repair(changes: readonly RefChange[]): Promise<string[]> {
    const failed: string[] = [];
    for (const c of changes) {
      const args =
        c.before === undefined
          ? ['update-ref', '-d', c.ref, c.after!]
          : [
              'update-ref',
              '-m',
              'agent-supervisor: repaired after tampering',
              c.ref,
              c.before,
              c.after ?? '0'.repeat(40),
            ];
      try {
        await git(this.repo, args);
      } catch {
        failed.push(c.ref);
      }
    }
    return failed;
  }

  /**
   * The commit the worktree's HEAD is at now (the agent may have committed): from git's files
   * in the plain case (`headFromFiles`, no process), else from git.
   */
  async head(worktree: string): Promise<string | undefined> {
    const fromFiles = headFromFiles(worktree);
    if (fromFiles) return fromFiles;
    try {
      return (await git(worktree, ['rev-parse', '--verify', 'HEAD'])).trim();
    } catch {
      return undefined;
    }
  }
}

export function describeChanges(changes: readonly RefChange[]): string {
  const short = (s: string | undefined) => (s ? s.slice(0, 12) : 'nothing');
  return changes
    .map(
      (c) =>
        `${c.ref.replace(/^refs\/(heads|tags)\//, (m, k: string) => (k === 'tags' ? 'tag ' : ''))} ${short(c.before)} → ${short(c.after)}`,
    )
    .join(', ');
}
