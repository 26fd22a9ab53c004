/**
 * Bad results from remote runners, checked by the recorder: a result ref that was never pushed,
 * one that points elsewhere than the reported commit, one that is not the ref of its attempt, a
 * commit reported without any ref. A fake runner (a plain BullMQ worker in this process) lies.
 */
import { describe, expect, it } from 'vitest';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { join } from 'node:path';
import {
  JobDataSchema,
  queueNameFor,
  resultRefFor,
  type JobResult,
} from '../../contract/job.js';
import { resolveRepo } from '../../supervisor/repo.js';
import { useCleanups } from '../helpers/cleanup.js';
import {
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
} from '../helpers/cli.js';
import { git, tempDir, tempRepo } from '../helpers/repo.js';

const cleanups = useCleanups();
const REDIS = 'redis://127.0.0.1:6379';

/** A commit the supervisor's repository does not have (made in a clone). */
function foreignCommit(
  repoDir: string,
  name: string,
): { clone: string; sha: string; base: string } {
  const clone = join(tempDir('sup-clone-'), 'c');
  git(repoDir, 'clone', '-q', repoDir, clone);
  git(clone, 'commit', '-q', '--allow-empty', '-m', name);
  return {
    clone,
    sha: git(clone, 'rev-parse', 'HEAD'),
    base: git(clone, 'rev-parse', 'HEAD~1'),
  };
}

describe('result refs the recorder refuses', () => {
  it('missing ref, wrong commit, foreign ref name, commit without a ref: each attempt fails clearly', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const env = testEnv({ REDIS_URL: REDIS, SUPERVISOR_ATTEMPTS: '2' });
    const sup = await startSupervisor(repo.dir, env, [
      '--agents',
      '0',
      '--no-dashboard',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    const paths = await resolveRepo(repo.dir);
    const resultsRepo = join(paths.stateDir, 'results.git');
    const a = foreignCommit(repo.dir, 'a');
    const b = foreignCommit(repo.dir, 'b');

    // What the fake runner reports, per (issue, attempt).
    const lies = new Map<
      string,
      (jobId: string, attempt: number) => Partial<JobResult>
    >([
      [
        '1/1',
        (jobId, attempt) => ({
          commitSha: a.sha,
          baseSha: a.base,
          resultRef: resultRefFor(jobId, attempt),
        }),
      ],
      [
        '1/2',
        (jobId, attempt) => {
          git(
            a.clone,
            'push',
            '-q',
            resultsRepo,
            `${a.sha}:${resultRefFor(jobId, attempt)}`,
          );
          return {
            commitSha: b.sha,
            baseSha: b.base,
            resultRef: resultRefFor(jobId, attempt),
          };
        },
      ],
      [
        '2/1',
        () => ({
          commitSha: a.sha,
          baseSha: a.base,
          resultRef: 'refs/heads/main',
        }),
      ],
      [
        '2/2',
        () => ({
          commitSha: a.sha,
          baseSha: a.base,
          resultRef: 'refs/heads/main',
        }),
      ],
      ['3/1', () => ({ commitSha: b.sha, baseSha: b.base })],
      ['3/2', () => ({ commitSha: b.sha, baseSha: b.base })],
    ]);
    const conn = new Redis(REDIS, { maxRetriesPerRequest: null });
    const worker = new Worker<unknown, JobResult>(
      queueNameFor(paths.repoId),
      async (job) => {
        const data = JobDataSchema.parse(job.data);
        const attempt = data.attemptOffset + job.attemptsStarted;
        const lie = lies.get(`${data.issueId}/${attempt}`);
        if (!lie) throw new Error(`unexpected ${data.issueId}/${attempt}`);
        const now = Date.now();
        return {
          agentId: 'agent-201',
          attempt,
          exitCode: 0,
          baseSha: '',
          commitSha: null,
          filesChanged: 0,
          insertions: 0,
          deletions: 0,
          durationMs: 1,
          logPath: '/remote/log',
          startedAt: now,
          finishedAt: now,
          ...lie(job.id!, attempt),
        };
      },
      { connection: conn, prefix: env.SUPERVISOR_PREFIX!, concurrency: 1 },
    );
    cleanups.push(async () => {
      await worker.close();
      conn.disconnect();
    });

    for (const t of [
      'Missing then mismatched',
      'Foreign ref name',
      'No ref at all',
    ])
      await runCli(['issue', 'add', t], { cwd: repo.dir, env });
    const finished = async (id: number) =>
      waitFor(
        async () => {
          const i = await cliJson(['issue', 'show', String(id)], {
            cwd: repo.dir,
            env,
          });
          return i.status === 'failed' ? i : false;
        },
        { timeoutMs: 30_000, what: `issue #${id} failed` },
      );

    const one = await finished(1);
    expect(one.runs.map((r: any) => [r.attempt, r.outcome])).toEqual([
      [1, 'failed'],
      [2, 'failed'],
    ]);
    expect(one.runs[0].error).toMatch(
      /result ref refs\/supervisor\/results\/1\/1 is missing .*never pushed it/,
    );
    expect(one.runs[1].error).toMatch(
      new RegExp(
        `result ref refs/supervisor/results/1/2 points to ${a.sha.slice(0, 12)}, not to the reported commit ${b.sha.slice(0, 12)}`,
      ),
    );
    expect(one.error).toBe(one.runs[1].error);

    const two = await finished(2);
    expect(two.runs.map((r: any) => r.outcome)).toEqual(['failed', 'failed']);
    expect(two.error).toMatch(
      /result ref "refs\/heads\/main" is not the ref of issue-2 attempt 2 \(refs\/supervisor\/results\/2\/2\)/,
    );
    const three = await finished(3);
    expect(three.error).toMatch(
      /is not in this repository and no result ref was pushed/,
    );

    // Nothing was published, nothing left behind, main untouched.
    for (const id of [1, 2, 3])
      expect(() =>
        git(repo.dir, 'rev-parse', '--verify', '-q', `issue/${id}`),
      ).toThrow();
    expect(git(resultsRepo, 'for-each-ref', 'refs/supervisor/')).toBe('');
    expect(git(repo.dir, 'for-each-ref', 'refs/supervisor/')).toBe('');
    expect(git(repo.dir, 'rev-parse', 'main')).toBe(a.base);
  });
});
