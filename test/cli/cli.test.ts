import { describe, expect, it } from 'vitest';
import { useCleanups } from '../helpers/cleanup.js';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
  type RunningSupervisor,
} from '../helpers/cli.js';
import { git, tempDir, tempRepo } from '../helpers/repo.js';

const cleanups = useCleanups();

function repo() {
  const r = tempRepo();
  cleanups.push(r.cleanup);
  return r.dir;
}

async function start(
  dir: string,
  env: Record<string, string>,
  args: string[],
): Promise<RunningSupervisor> {
  const sup = await startSupervisor(dir, env, args);
  cleanups.push(async () => void (await sup.stop()));
  return sup;
}

const allDone = (dir: string, env: Record<string, string>, n: number) =>
  waitFor(
    async () => {
      const l = await cliJson<any[]>(['issue', 'list'], { cwd: dir, env });
      return l.length === n &&
        l.every((i) => i.status === 'done' || i.status === 'failed')
        ? l
        : false;
    },
    { timeoutMs: 60_000, what: `${n} issues finished` },
  );

describe('supervisor CLI', () => {
  it('prints --help for every command and exits 0', async () => {
    const dir = repo();
    for (const args of [
      [],
      ['init'],
      ['issue'],
      ['issue', 'add'],
      ['issue', 'list'],
      ['issue', 'show'],
      ['start'],
      ['scale'],
      ['status'],
      ['logs'],
      ['stop'],
      ['cleanup'],
    ]) {
      const r = await runCli([...args, '--help'], { cwd: dir });
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/Usage: supervisor/);
    }
  });

  it('refuses a directory that is not a git repository, and a repository with no commit', async () => {
    const plain = tempDir();
    const r = await runCli(['init'], { cwd: plain });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not inside a git repository/);
    expect(r.stderr).toMatch(/hint: run `git init`/);
    expect(existsSync(join(plain, '.supervisor'))).toBe(false);
    const empty = tempRepo({ empty: true });
    cleanups.push(empty.cleanup);
    const e = await runCli(['init'], { cwd: empty.dir });
    expect(e.code).toBe(1);
    expect(e.stderr).toMatch(/no commit yet/);
    const missing = await runCli(['--repo', join(plain, 'nope'), 'status'], {
      cwd: plain,
    });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/is not a directory/);
  });

  it('init is idempotent and keeps .supervisor/ and .worktrees/ out of git', async () => {
    const dir = repo();
    const a = await cliJson<any>(['init'], { cwd: dir });
    const b = await cliJson<any>(['init'], { cwd: dir });
    expect(a.created).toBe(true);
    expect(b.created).toBe(false);
    expect(a.baseBranch).toBe('main');
    const exclude = readFileSync(join(dir, '.git/info/exclude'), 'utf8');
    expect(exclude.match(/^\/\.supervisor\/$/gm)).toHaveLength(1);
    expect(exclude.match(/^\/\.worktrees\/$/gm)).toHaveLength(1);
    expect(git(dir, 'status', '--porcelain')).toBe('');
  });

  it('adds, lists and shows issues; refuses bad input without storing anything', async () => {
    const dir = repo();
    const env = testEnv();
    const added = await cliJson<any>(
      [
        'issue',
        'add',
        'Fix the login',
        '--body',
        'details',
        '--priority',
        'high',
      ],
      { cwd: dir, env },
    );
    expect(added).toEqual({
      id: 1,
      title: 'Fix the login',
      priority: 'high',
      status: 'open',
    });
    const bad = [
      [
        ['issue', 'add', 'x', '--priority', 'critical'],
        /unknown priority "critical"/,
      ],
      [['issue', 'add', '   '], /title is empty/],
      [
        ['issue', 'add', 'x', '--body', 'a', '--body-file', 'b'],
        /mutually exclusive/,
      ],
      [
        ['issue', 'add', 'x', '--body-file', '/nonexistent/file'],
        /cannot read --body-file/,
      ],
      [['issue', 'add', 'x'.repeat(1001)], /at most 1000/],
      [['issue', 'show', 'abc'], /positive whole number/],
      [['issue', 'list', '--status', 'weird'], /unknown status/],
    ] as const;
    for (const [args, msg] of bad) {
      const r = await runCli([...args], { cwd: dir, env });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(msg);
    }
    const big = join(tempDir(), 'big');
    writeFileSync(big, Buffer.alloc(5 * 1024 * 1024, 'a'));
    const tooBig = await runCli(['issue', 'add', 'x', '--body-file', big], {
      cwd: dir,
      env,
    });
    expect(tooBig.code).toBe(2);
    expect(tooBig.stderr).toMatch(/at most/);
    const notFound = await runCli(['issue', 'show', '99'], { cwd: dir, env });
    expect(notFound.code).toBe(1);
    expect(notFound.stderr).toMatch(/#99 does not exist/);
    const list = await cliJson<any[]>(['issue', 'list'], { cwd: dir, env });
    expect(list).toEqual([
      {
        id: 1,
        title: 'Fix the login',
        priority: 'high',
        status: 'open',
        agent: null,
        branch: null,
        commit: null,
        attempts: 0,
        landedSha: null,
        landAttempts: 0,
        requeues: 0,
        behind: null,
        mergeable: null,
        conflictFiles: [],
        usage: null,
      },
    ]);
    const shown = await cliJson<any>(['issue', 'show', '1'], { cwd: dir, env });
    expect(shown).toMatchObject({ id: 1, body: 'details', runs: [] });
    const text = await runCli(['issue', 'list'], { cwd: dir, env });
    expect(text.stdout).toMatch(/#1\s+high\s+open/);
  });

  it('hands hostile titles and a 2 MB non-UTF-8 body to the agent byte-exact, never executing them', async () => {
    const dir = repo();
    const out = tempDir();
    const canary = join(out, 'canary');
    const echo = join(out, 'echo');
    const env = testEnv({ AGENT_ECHO_FILE: echo });
    const hostile = `it's "quoted" $(touch ${canary}) \`touch ${canary}\` ; touch ${canary} | & > <`;
    const body = Buffer.concat([
      Buffer.from(`line1\n$(touch ${canary})\n\`touch ${canary}\`\n`),
      Buffer.from([0xff, 0xfe, 0x00, 0x80]),
      Buffer.alloc(2 * 1024 * 1024, 0x41),
    ]);
    const bodyFile = join(out, 'body.bin');
    writeFileSync(bodyFile, body);
    await cliJson(['issue', 'add', hostile, '--body-file', bodyFile], {
      cwd: dir,
      env,
    });
    await cliJson(
      [
        'issue',
        'add',
        `multi\nline ${hostile}`,
        '--body',
        `echo $(touch ${canary}) "$HOME" 'x'`,
      ],
      { cwd: dir, env },
    );
    await start(dir, env, ['--agents', '1', '--no-dashboard']);
    const list = await allDone(dir, env, 2);
    expect(list.map((i) => i.status)).toEqual(['done', 'done']);
    expect(readFileSync(`${echo}.1.title`, 'utf8')).toBe(hostile);
    expect(readFileSync(`${echo}.1.body`).equals(body)).toBe(true);
    expect(readFileSync(`${echo}.2.title`, 'utf8')).toBe(
      `multi\nline ${hostile}`,
    );
    expect(readFileSync(`${echo}.2.envbody`, 'utf8')).toBe(
      `echo $(touch ${canary}) "$HOME" 'x'`,
    );
    const env1 = JSON.parse(readFileSync(`${echo}.1.env`, 'utf8'));
    expect(env1.ISSUE_BODY_TRUNCATED).toBe('1');
    expect(existsSync(canary)).toBe(false);
    const shown = await cliJson<any>(['issue', 'show', '1'], { cwd: dir, env });
    expect(
      Buffer.from(shown.body.replace(/^base64:/, ''), 'base64').equals(body),
    ).toBe(true);
  });

  it('validates agent counts (usage errors exit 2) and refuses to scale a supervisor that is not running', async () => {
    const dir = repo();
    const env = testEnv({ SUPERVISOR_MAX_AGENTS: '4' });
    for (const [arg, msg] of [
      ['abc', /whole number/],
      ['-1', /unknown option|whole number/],
      ['1.5', /whole number/],
      ['5', /above the maximum of 4/],
    ] as const) {
      const r = await runCli(['scale', arg], { cwd: dir, env });
      expect(r.code, arg).toBe(2);
      expect(r.stderr).toMatch(msg);
    }
    const r = await runCli(['scale', '2'], { cwd: dir, env });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not running/);
    expect(r.stderr).toMatch(/supervisor start --agents 2/);
    const s = await runCli(['start', '--agents', '9'], { cwd: dir, env });
    expect(s.code).toBe(2);
  });

  it('refuses to start without an agent command, with a hint', async () => {
    const dir = repo();
    const env = testEnv();
    delete env.SUPERVISOR_AGENT_COMMAND;
    const r = await runCli(['start', '--no-dashboard'], { cwd: dir, env });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no agent command/);
    expect(r.stderr).toMatch(/--agent claude\|codex\|aider/);
  });

  it('refuses a second start on the same repository, naming the running pid', async () => {
    const dir = repo();
    const env = testEnv();
    const sup = await start(dir, env, ['--agents', '0', '--no-dashboard']);
    const r = await runCli(['start', '--no-dashboard'], { cwd: dir, env });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `already running for this repository (pid ${sup.pid})`,
    );
    const d = await runCli(['start', '--detach', '--no-dashboard'], {
      cwd: dir,
      env,
    });
    expect(d.code).toBe(1);
    expect(d.stderr).toContain(`pid ${sup.pid}`);
  });

  it('leaves a dirty main worktree untouched', async () => {
    const dir = repo();
    const env = testEnv();
    writeFileSync(join(dir, 'README.md'), 'local edit, not committed\n');
    writeFileSync(join(dir, 'scratch.txt'), 'untracked\n');
    const before = git(dir, 'status', '--porcelain');
    const head = git(dir, 'rev-parse', 'HEAD');
    await runCli(['issue', 'add', 'Work elsewhere'], { cwd: dir, env });
    await start(dir, env, ['--agents', '1', '--no-dashboard']);
    const [issue] = await allDone(dir, env, 1);
    expect(issue.status).toBe('done');
    expect(git(dir, 'status', '--porcelain')).toBe(before);
    expect(readFileSync(join(dir, 'README.md'), 'utf8')).toBe(
      'local edit, not committed\n',
    );
    expect(git(dir, 'rev-parse', 'HEAD')).toBe(head);
    // The agent's commit is based on the committed tip, without the local edit.
    expect(git(dir, 'show', `${issue.commit}:README.md`)).toBe('# test repo');
  });

  it('runs detached, scales with progress, shows logs, stops, and cleans up without touching issue branches', async () => {
    const dir = repo();
    const env = testEnv();
    await runCli(['issue', 'add', 'One', '--body', 'sleep: 300'], {
      cwd: dir,
      env,
    });
    const d = await runCli(
      ['start', '--detach', '--agents', '1', '--no-dashboard'],
      { cwd: dir, env },
    );
    expect(d.code).toBe(0);
    expect(d.stdout).toMatch(/supervisor running \(pid \d+\)/);
    cleanups.push(async () => void (await runCli(['stop'], { cwd: dir, env })));
    const scaled = await runCli(['scale', '3'], { cwd: dir, env });
    expect(scaled.code).toBe(0);
    expect(scaled.stderr).toMatch(/agent-003: (starting|idle)/);
    expect(scaled.stdout).toMatch(/3 agents running/);
    const json = await cliJson<any>(['scale', '2'], { cwd: dir, env });
    expect(json.converged).toBe(true);
    expect(json.agents.map((a: any) => a.id)).toEqual([
      'agent-001',
      'agent-002',
    ]);
    await allDone(dir, env, 1);
    const logs = await runCli(['logs'], { cwd: dir, env });
    expect(logs.stdout).toMatch(/^\d\d:\d\d:\d\d agent-001 \| /m);
    expect(logs.stdout).toMatch(/scripted agent agent-00\d on issue 1/);
    const one = await runCli(['logs', 'agent-001', '--lines', '5'], {
      cwd: dir,
      env,
    });
    expect(one.code).toBe(0);
    expect(one.stdout.trim().split('\n').length).toBeLessThanOrEqual(5);
    expect((await runCli(['logs', 'agent-x'], { cwd: dir, env })).code).toBe(2);
    const refused = await runCli(['cleanup'], { cwd: dir, env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/is running/);
    const forced = await cliJson<any>(['cleanup', '--force'], {
      cwd: dir,
      env,
    });
    expect(forced.removed).toEqual(['agent-003']);
    expect(existsSync(join(dir, '.worktrees/agent-003'))).toBe(false);
    expect(existsSync(join(dir, '.worktrees/agent-001'))).toBe(true);
    const stopped = await cliJson<any>(['stop'], { cwd: dir, env });
    expect(stopped.stopped).toBe(true);
    const status = await cliJson<any>(['status'], { cwd: dir, env });
    expect(status.supervisor.running).toBe(false);
    expect(status.agents).toEqual([]);
    const cleaned = await cliJson<any>(['cleanup'], { cwd: dir, env });
    expect(cleaned.removed.sort()).toEqual(['agent-001', 'agent-002']);
    expect(git(dir, 'branch', '--list', 'agent/*')).toBe('');
    expect(git(dir, 'branch', '--list', 'issue/*')).toContain('issue/1');
    expect(existsSync(join(dir, '.worktrees'))).toBe(false);
  });
});
