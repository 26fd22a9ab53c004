/**
 * Ref writes without a git process per write: one long-lived `git update-ref --stdin`
 * (`git/session.ts`), each write a transaction of its own (`start`, `update`, `prepare`,
 * `commit`; git answers each on stdout).
 *
 * Every guarantee of `git update-ref <ref> <oid>` holds, because it is the same git code: the ref
 * is written under git's own lock (`<ref>.lock`, created exclusively, renamed into place), so
 * other processes (the lander, users) updating refs stay correct; a branch (`refs/heads/`) is
 * refused unless the object exists and is a commit; `commit: ok` is only printed, and flushed,
 * once the ref is in place, so a caller that writes SQLite afterwards never records a branch git
 * does not have. New objects (runners commit into the shared object store all the time) are seen:
 * git looks for loose objects on disk and rescans the packs when an object is missing.
 *
 * git ends the process on any refused update (`fatal: prepare: ...`) and removes its lock on the
 * way out; the write is rejected with git's message and the next one starts a new process. A
 * write whose process ended before it acknowledged the transaction's `start` is sent once more to
 * a new process: nothing of it reached git.
 *
 * Only an object id and a ref name checked here reach git's stdin: a line break in either would
 * be a second command.
 */
import { GitSession } from './session.js';
import { DEFAULT_GIT_TIMEOUT_MS, GitError } from './runner.js';

const OID = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;
/** A full ref name without space or control characters (git checks the rest of its format). */
const REF = /^refs\/[\x21-\x7e]+$/;
const REPLIES = 'start: ok\nprepare: ok\ncommit: ok\n';

export class RefWriter {
  private readonly session: GitSession;

  constructor(
    cwd: string,
    timeoutMs: () => number = () => DEFAULT_GIT_TIMEOUT_MS,
  ) {
    this.session = new GitSession(cwd, ['update-ref', '--stdin'], timeoutMs);
  }

  /** Processes started so far: one per refusal, not one per write. */
  get starts(): number {
    return this.session.starts;
  }

  /** The pid of the running git (tests). */
  get pid(): number | undefined {
    return this.session.pid;
  }

  /**
   * Sets `ref` to `oid` (no old value is checked, as `git update-ref <ref> <oid>`). Resolves once
   * git has committed the write; rejects with a GitError when git refused it or did not answer.
   */
  update(ref: string, oid: string): Promise<void> {
    if (!REF.test(ref) || !OID.test(oid))
      return Promise.reject(
        new GitError(
          `not a ref name and object id: ${JSON.stringify(ref)} ${JSON.stringify(oid)}`,
          ['update-ref', '--stdin'],
          null,
          '',
          false,
          '',
        ),
      );
    return this.session.request(
      `start\nupdate ${ref} ${oid}\nprepare\ncommit\n`,
      (out) => {
        const got = out.subarray(0, REPLIES.length).toString('latin1');
        if (!REPLIES.startsWith(got))
          throw new Error(`answered ${JSON.stringify(got)}`);
        return got.length === REPLIES.length
          ? { value: undefined, used: REPLIES.length }
          : undefined;
      },
    );
  }

  /** Lets git exit after the writes already asked for (`GitSession.close`); later ones fail. */
  close(graceMs?: number): Promise<void> {
    return this.session.close(graceMs);
  }
}
