import { issueBranch, type JobResult } from '../../contract/job.js';
import type { RefPacker } from '../../git/ref-packer.js';
import type { RefWriter } from '../../git/ref-writer.js';
import { gitAt } from '../repo.js';
import { ResultRefError, type ResultRefs } from '../results.js';

const OID = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;

/** Where a completed job's commit came from, for clean-up after it is recorded. */
export interface Published {
  branch: string | null;
  /** Remote mode: the incoming ref that kept the result's objects reachable. */
  incoming: string | undefined;
}

/**
 * Publishes a completed job's commit as its issue branch `issue/<id>`: a local commit by
 * the recorder's long-lived `update-ref --stdin` (`git/ref-writer.ts`; refused unless we have
 * that commit), a remote runner's by its result ref
 * (fetched and checked first). Throws ResultRefError when the result cannot be published.
 */
export class BranchPublisher {
  constructor(
    private readonly repoRoot: string,
    private readonly results: ResultRefs | undefined,
    private readonly refs: RefWriter,
    /** Told of each branch written: keeps the loose refs runners read few. */
    private readonly packer?: RefPacker,
  ) {}

  async publish(
    jobId: string,
    issueId: number,
    res: JobResult,
  ): Promise<Published> {
    let incoming: string | undefined;
    let branchDone = false;
    if (res.resultRef !== undefined) {
      if (!this.results)
        throw new ResultRefError(
          `the result came as ref ${res.resultRef}, but this supervisor takes no result refs`,
        );
      incoming = await this.results.take(jobId, res);
    } else if (res.commitSha) {
      // No git process per result: the writer's update-ref refuses a branch at anything but a
      // commit we have; only when it refuses do we ask (one process) what the object was.
      const branched = await this.refs
        .update(`refs/heads/${issueBranch(issueId)}`, res.commitSha)
        .then(
          () => true,
          async (err: unknown) => {
            // Only an object id reaches git's argv (a result is the runner's word).
            if (
              OID.test(res.commitSha!) &&
              (await gitAt(this.repoRoot)
                .raw(['cat-file', '-t', res.commitSha!])
                .then(
                  (t) => t.trim() === 'commit',
                  () => false,
                ))
            )
              throw err;
            return false;
          },
        );
      if (!branched)
        throw new ResultRefError(
          `commit ${res.commitSha.slice(0, 12)} is not in this repository and no result ref was pushed (a runner on another host must run in remote git mode)`,
        );
      branchDone = true;
    }
    const branch = res.commitSha ? issueBranch(issueId) : null;
    // The branch first: a crash after it is repaired by the next reconcile, never the reverse.
    if (branch && res.commitSha && !branchDone)
      await this.refs.update(`refs/heads/${branch}`, res.commitSha);
    if (branch) this.packer?.wrote();
    return { branch, incoming };
  }
}
