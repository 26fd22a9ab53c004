/**
 * Commit headers without a git process per read: one long-lived `git cat-file --batch`
 * (`git/session.ts`). The supervisor reads a done issue's parents to see whether its commit sits
 * directly on the base tip, where its merge state needs no `rev-list` and no `merge-tree`.
 * Objects written after it started are seen (git looks for loose objects on disk and rescans the
 * packs when one is missing). Only a checked object id reaches git's stdin.
 */
import { GitSession } from './session.js';
import { DEFAULT_GIT_TIMEOUT_MS } from './runner.js';

const OID = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;

export class CommitReader {
  private readonly session: GitSession;

  constructor(
    cwd: string,
    timeoutMs: () => number = () => DEFAULT_GIT_TIMEOUT_MS,
  ) {
    this.session = new GitSession(cwd, ['cat-file', '--batch'], timeoutMs);
  }

  /** Processes started so far. */
  get starts(): number {
    return this.session.starts;
  }

  /** The parents of commit `oid`; undefined when this repository has no commit `oid`. */
  async parents(oid: string): Promise<string[] | undefined> {
    if (!OID.test(oid)) return undefined;
    const body = await this.session.request(`${oid}\n`, (out) => {
      const nl = out.indexOf(0x0a);
      if (nl < 0) return undefined;
      // `<oid> <type> <size>` and the object, or `<oid> missing`.
      const header = out.subarray(0, nl).toString('latin1').split(' ');
      if (header[0] !== oid) throw new Error(`answered for ${header[0]}`);
      if (header.length !== 3) return { value: undefined, used: nl + 1 };
      const size = Number(header[2]);
      const end = nl + 1 + size + 1;
      if (out.length < end) return undefined;
      const value =
        header[1] === 'commit'
          ? out.subarray(nl + 1, end - 1).toString('latin1')
          : undefined;
      return { value, used: end };
    });
    if (body === undefined) return undefined;
    const blank = body.indexOf('\n\n');
    return (blank < 0 ? body : body.slice(0, blank))
      .split('\n')
      .filter((l) => l.startsWith('parent '))
      .map((l) => l.slice('parent '.length));
  }

  /** Lets git exit; later reads are rejected. */
  close(): Promise<void> {
    return this.session.close();
  }
}
