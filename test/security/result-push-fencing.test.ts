/**
 * Result-ref squatting: with the git token a remote runner holds, anyone could push
 * `refs/supervisor/results/<issue>/<next attempt>` before the real runner, so that runner's push
 * failed and its attempt was spent. A push is now accepted only with the claim (job id + BullMQ
 * lock token) of exactly the attempt its ref names, while that claim is held. Real parts: the
 * dashboard's git endpoint (GitHttp + git http-backend), Redis, a BullMQ worker holding the job.
 */
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { expect, it, describe } from 'vitest';
import { GitHttp } from '../../dashboard/git-http.js';
import { claimRefusal } from '../../dashboard/result-claims.js';
import { CLAIM_HEADER, encodeClaim } from '../../contract/result-claim.js';
import { resultRefFor } from '../../contract/job.js';
import { ResultRefs } from '../../supervisor/results.js';
import { SERVED_REPO_PATH } from '../../supervisor/remote.js';
import { useCleanups } from '../helpers/cleanup.js';
import { git, tempDir, tempRepo } from '../helpers/repo.js';
import { testEnv } from '../helpers/cli.js';

const cleanups = useCleanups();
const REDIS = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** git push, asynchronously: the endpoint answers from this same process. */
function push(
  clone: string,
  url: string,
  spec: string,
  header?: string,
): Promise<{ ok: boolean; out: string }> {
  return new Promise((resolve) => {
    execFile(
      'git',
      [
        ...(header ? ['-c', `http.extraHeader=${header}`] : []),
        'push',
        '--porcelain',
        url,
        spec,
      ],
      {
        cwd: clone,
        encoding: 'utf8',
        env: { ...process.env, GIT_TERMINAL_PROMPT: '0' },
        timeout: 30_000,
      },
      (err, stdout, stderr) =>
        resolve({ ok: !err, out: `${stdout ?? ''}${stderr ?? ''}` }),
    );
  });
}

describe('result pushes are fenced by the claim', () => {
  it('refuses a push without the claim, with a forged token, or for another attempt; accepts the holder of that attempt', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const stateDir = tempDir('sup-fence-');
    const results = new ResultRefs({
      repoRoot: repo.dir,
      gitCommonDir: join(repo.dir, '.git'),
      stateDir,
      log: () => undefined,
    });
    await results.ensure();

    const prefix = testEnv().SUPERVISOR_PREFIX!;
    const redis = new Redis(REDIS, { maxRetriesPerRequest: null });
    const queue = new Queue('fence', { connection: redis, prefix });
    cleanups.push(async () => {
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      redis.disconnect();
    });

    const http = new GitHttp({
      gitDir: join(repo.dir, '.git'),
      resultsRepo: results.resultsRepo,
      authorize: () => undefined,
      log: () => undefined,
      checkPush: (ref, req) =>
        claimRefusal(ref, req.headers[CLAIM_HEADER.toLowerCase()], {
          redis,
          queue,
        }),
    });
    const server: Server = createServer((req, res) => http.handle(req, res));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const port = (server.address() as { port: number }).port;
    const url = `http://127.0.0.1:${port}${SERVED_REPO_PATH}`;

    // A runner holds issue-5, attempt 1 (attemptOffset 0 + first start).
    let held: { job: Job; token: string } | undefined;
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const worker = new Worker(
      'fence',
      async (job, token) => {
        held = { job, token: token! };
        await released;
        return {};
      },
      {
        connection: redis.duplicate({ maxRetriesPerRequest: null }),
        prefix,
      },
    );
    cleanups.push(async () => {
      release();
      await worker.close();
    });
    await queue.add(
      'issue',
      { issueId: 5, title: 't', body: '', priority: 'medium' },
      { jobId: 'issue-5' },
    );
    for (let i = 0; i < 200 && !held; i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(held).toBeDefined();
    const { token } = held!;

    git(repo.dir, 'commit', '-q', '--allow-empty', '-m', 'result');
    const sha = git(repo.dir, 'rev-parse', 'HEAD');
    const mine = resultRefFor('issue-5', 1);
    const next = resultRefFor('issue-5', 2);
    const claim = (t: string) =>
      `${CLAIM_HEADER}: ${encodeClaim({ jobId: 'issue-5', token: t })}`;

    // The squatter: no claim, a guessed token, the holder's claim for the next attempt.
    const none = await push(repo.dir, url, `${sha}:${next}`);
    expect(none.ok).toBe(false);
    expect(none.out).toMatch(/must carry the claim/);
    const forged = await push(
      repo.dir,
      url,
      `${sha}:${mine}`,
      claim('00000000-0000-0000-0000-000000000000'),
    );
    expect(forged.ok).toBe(false);
    expect(forged.out).toMatch(/does not hold issue-5/);
    const ahead = await push(repo.dir, url, `${sha}:${next}`, claim(token));
    expect(ahead.ok).toBe(false);
    expect(ahead.out).toMatch(/attempt 2 is not the attempt the pusher holds/);
    expect(git(results.resultsRepo, 'for-each-ref', 'refs/supervisor/')).toBe(
      '',
    );

    // The holder pushes its own attempt's ref.
    const real = await push(repo.dir, url, `${sha}:${mine}`, claim(token));
    expect(real.ok, real.out).toBe(true);
    expect(
      git(results.resultsRepo, 'for-each-ref', '--format=%(refname)'),
    ).toBe(mine);

    // Once the claim is given up, even its own token pushes nothing more.
    release();
    await new Promise((r) => setTimeout(r, 300));
    expect(
      await claimRefusal(mine, encodeClaim({ jobId: 'issue-5', token }), {
        redis,
        queue,
      }),
    ).toMatch(/does not hold issue-5/);
  }, 60_000);
});
