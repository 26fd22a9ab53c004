/**
 * A remote-mode runner's clone (Swarm tasks, pods, runners on other hosts) is the agent's to
 * write: through its worktree it can set anything in the clone's configuration. Settings that
 * redirect a fetch or push (`url.<trap>.insteadOf`, `http.proxy`, an `include.path`) would send
 * the git token the runner holds to a host of the agent's choosing, and the git runner's safe
 * settings do not cover them. The runner puts the configuration back before every call that
 * reaches the remote. Real git, a file:// remote, and a trap HTTP server that records what it
 * is sent.
 */
import { createServer, type Server } from 'node:http';
import {
  existsSync,
  lstatSync,
  readFileSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadGitCredentials } from '../../agent-runner/git-auth.js';
import { RemoteClone } from '../../agent-runner/remote-clone.js';
import { git, tempDir, tempRepo } from '../helpers/repo.js';

const TOKEN = 'remote-git-token-0123456789';
const seen: string[] = [];
let trap: Server;
let trapUrl = '';

beforeAll(async () => {
  trap = createServer((req, res) => {
    seen.push(`${req.url} ${req.headers.authorization ?? ''}`);
    res.statusCode = 404;
    res.end();
  });
  await new Promise<void>((r) => trap.listen(0, '127.0.0.1', r));
  const addr = trap.address();
  trapUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/`;
});

afterAll(() => new Promise<void>((r) => trap.close(() => r())));

it("what an agent plants in its clone's configuration never redirects the runner's fetch or push, nor where the runner writes", async () => {
  const origin = tempRepo();
  const cacheDir = tempDir('sup-cache-');
  const path = join(cacheDir, 'agent-001', 'worktree');
  const clone = new RemoteClone({
    url: `file://${origin.dir}`,
    pushUrl: `file://${origin.dir}`,
    cacheDir,
    path,
    branch: 'agent/001',
    agentId: 'agent-001',
    credentials: loadGitCredentials(undefined, { SUPERVISOR_GIT_TOKEN: TOKEN }),
    timeoutMs: 10_000,
  });
  const base = await clone.prepare('main');
  expect(base).toBe(git(origin.dir, 'rev-parse', 'main'));

  // The agent, in its worktree: every fetch and push of the cache to the trap, via a proxy, and
  // from a file it includes.
  git(path, 'config', `url.${trapUrl}.insteadOf`, 'file://');
  git(path, 'config', 'http.proxy', trapUrl);
  const included = join(tempDir('sup-include-'), 'more');
  git(path, 'config', 'include.path', included);
  git(
    path,
    'config',
    '--file',
    included,
    `url.${trapUrl}.pushInsteadOf`,
    'file://',
  );
  // (Without the reset, this prepare fetches from the trap with the token.)
  const next = await clone.prepare('main').catch((e: Error) => e);
  expect(seen).toEqual([]);
  expect(next).toBe(base);
  const configFile = join(cacheDir, 'repo.git', 'config');
  expect(readFileSync(configFile, 'utf8')).not.toMatch(
    /insteadOf|proxy|include/i,
  );

  // The next job: its result goes to the remote, not the trap.
  git(path, 'config', `url.${trapUrl}.pushInsteadOf`, 'file://');
  git(path, 'commit', '-q', '--allow-empty', '-m', 'result');
  const sha = git(path, 'rev-parse', 'HEAD');
  await clone.publish(sha, 'refs/supervisor/results/1/1');
  expect(git(origin.dir, 'rev-parse', 'refs/supervisor/results/1/1')).toBe(sha);

  // A configuration replaced by a symbolic link: the runner replaces the link, never writes
  // through it.
  const target = join(tempDir('sup-elsewhere-'), 'written-through-link');
  rmSync(configFile);
  symlinkSync(target, configFile);
  expect(await clone.prepare('main')).toBe(base);
  expect(lstatSync(configFile).isSymbolicLink()).toBe(false);
  expect(existsSync(target)).toBe(false);

  expect(seen).toEqual([]);
});
