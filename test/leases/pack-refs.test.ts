/**
 * The supervisor packs the branches it writes (`git/ref-packer.ts`): every runner reads the loose
 * `issue/*` refs before and after each agent, so they must not pile up with history. Here the
 * recorder packs after every branch; what it published is still what git resolves.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { git } from '../helpers/repo.js';
import {
  claimedIssue,
  committedRepo,
  recorderWorld,
  resultAt,
} from '../helpers/recorder-world.js';
import { waitFor } from '../helpers/cli.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('published branches', () => {
  it('are packed into packed-refs, not left as loose files', async () => {
    const w = recorderWorld('issues-pack-refs', cleanups, { packRefsEvery: 1 });
    const sha = committedRepo(w);
    const { id, job, token } = await claimedIssue(w, 'commits', cleanups);
    await job.moveToCompleted(resultAt(sha), token, false);
    await w.recorder.reconcile();
    expect(w.issues.get(id)!.status).toBe('done');
    const packed = join(w.dir, '.git', 'packed-refs');
    await waitFor(
      () => {
        try {
          return readFileSync(packed, 'utf8').includes(
            `${sha} refs/heads/issue/${id}\n`,
          );
        } catch {
          return false;
        }
      },
      { what: `issue/${id} in packed-refs` },
    );
    const issueDir = join(w.dir, '.git', 'refs', 'heads', 'issue');
    let loose: string[] = [];
    try {
      loose = readdirSync(issueDir);
    } catch {
      /* git removed the emptied directory */
    }
    expect(loose).toEqual([]);
    expect(git(w.dir, 'rev-parse', `issue/${id}`)).toBe(sha);
  });
});
