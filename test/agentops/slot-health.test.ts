import { describe, expect, it } from 'vitest';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { useCleanups } from '../helpers/cleanup.js';
import {
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
} from '../helpers/cli.js';
import { git, tempDir, tempRepo } from '../helpers/repo.js';
import { status, workingOn } from '../helpers/agents.js';

const cleanups = useCleanups();

type Run = { attempt: number; outcome: string; errorKind: string | null };
type Shown = { id: number; status: string; error: string | null; runs: Run[] };

async function setup(extra: Record<string, string> = {}) {
  const repo = tempRepo();
  cleanups.push(repo.cleanup);
  return { dir: repo.dir, env: testEnv(extra) };
}

async function start(dir: string, env: Record<string, string>, n: number) {
  const sup = await startSupervisor(dir, env, [
    '--agents',
    String(n),
    '--no-dashboard',
  ]);
  cleanups.push(async () => void (await sup.stop()));
  return sup;
}

async function add(
  dir: string,
  env: Record<string, string>,
  title: string,
  body = '',
  priority = 'medium',
): Promise<void> {
  const r = await runCli(
    ['issue', 'add', title, '--body', body, '--priority', priority],
    { cwd: dir, env },
  );
  expect(r.code, r.stderr).toBe(0);
}

const show = (dir: string, env: Record<string, string>, id: number) =>
  cliJson<Shown>(['issue', 'show', String(id)], { cwd: dir, env });

/** Waits until every issue is done or failed; returns them by id. */
async function finished(
  dir: string,
  env: Record<string, string>,
  n: number,
): Promise<Shown[]> {
  await waitFor(
    async () => {
      const list = await cliJson<Shown[]>(['issue', 'list'], {
        cwd: dir,
        env,
      });
      return (
        list.length === n &&
        list.every((i) => i.status === 'done' || i.status === 'failed')
      );
    },
    { what: `${n} issues finished` },
  );
  return Promise.all(
    Array.from({ length: n }, (_, i) => show(dir, env, i + 1)),
  );
}

const idle = async (dir: string, env: Record<string, string>, n: number) =>
  waitFor(
    async () => {
      const s = await cliJson<any>(['status'], { cwd: dir, env });
      return s.agents.filter((a: any) => a.state === 'idle').length === n && s;
    },
    { what: `${n} idle agents` },
  );

describe('slot health', () => {
  it('a slot whose worktree HEAD was broken is repaired, and no issue fails', async () => {
    const { dir, env } = await setup();
    await start(dir, env, 1);
    await idle(dir, env, 1);
    // What an agent (or a killed git) can leave behind: a HEAD git cannot read, a stale lock.
    const admin = join(dir, '.git', 'worktrees', 'agent-001');
    writeFileSync(join(admin, 'HEAD'), 'garbage\n');
    writeFileSync(join(admin, 'index.lock'), '');
    for (let i = 1; i <= 3; i++) await add(dir, env, `issue ${i}`);
    const list = await finished(dir, env, 3);
    expect(list.map((i) => i.status)).toEqual(['done', 'done', 'done']);
    for (const i of list)
      expect(i.runs.map((r) => r.outcome)).toEqual(['succeeded']);
    expect(git(join(dir, '.worktrees', 'agent-001'), 'status', '--short')).toBe(
      '',
    );
  });

  it('an agent that corrupts its HEAD fails its own issue only; the queue behind it is done', async () => {
    // The reported case: one such agent failed 8 queued issues (2 attempts each) in 0.3 s.
    const { dir, env } = await setup();
    await add(dir, env, 'corrupter', 'corrupt-head: yes', 'urgent');
    for (let i = 1; i <= 8; i++) await add(dir, env, `issue ${i}`);
    await start(dir, env, 1);
    const list = await finished(dir, env, 9);
    const [corrupter, ...rest] = list;
    expect(corrupter!.status).toBe('failed');
    expect(corrupter!.error).toMatch(/the agent damaged its worktree/);
    expect(corrupter!.runs.map((r) => r.errorKind)).toEqual([
      'result-refused',
      'result-refused',
    ]);
    expect(rest.map((i) => i.status)).toEqual(Array(8).fill('done'));
    for (const i of rest)
      expect(i.runs.map((r) => r.outcome)).toEqual(['succeeded']);
    const s = await idle(dir, env, 1);
    expect(s.agents[0].state).toBe('idle');
  });

  it('an issue whose agent keeps killing its runner is failed as poison; the others finish', async () => {
    // A lock long enough that the restarted runner takes its slot over before the job stalls
    // (BullMQ's own bound on stalls would fail it first, as `stalled`).
    const { dir, env } = await setup({
      SUPERVISOR_POISON_AFTER: '3',
      SUPERVISOR_LOCK_DURATION: '60000',
      SUPERVISOR_STALLED_INTERVAL: '30000',
    });
    await add(dir, env, 'poison', 'kill-runner: yes', 'urgent');
    for (let i = 1; i <= 3; i++) await add(dir, env, `issue ${i}`);
    await start(dir, env, 2);
    const [poison, ...rest] = await finished(dir, env, 4);
    expect(poison!.status).toBe('failed');
    expect(poison!.error).toMatch(/^poison: the runner died 3 times/);
    // Two deaths handed the job back unspent; the third failed it for good, without a retry.
    expect(poison!.runs.map((r) => [r.outcome, r.errorKind])).toEqual([
      ['released', null],
      ['released', null],
      ['failed', 'poison'],
    ]);
    expect(rest.map((i) => i.status)).toEqual(['done', 'done', 'done']);
    // The slots go on: both are back, idle, not given up on.
    await idle(dir, env, 2);
  });

  it('a slot that stays broken is quarantined, its job handed back unspent and finished by another slot; restart brings it back', async () => {
    const { dir, env } = await setup();
    const tmp = tempDir('sup-quarantine-');
    cleanups.push(() => rmSync(tmp, { recursive: true, force: true }));
    await start(dir, env, 2);
    await idle(dir, env, 2);
    // One slot holds a long job, so the other one takes the next issue.
    const gate = join(tmp, 'go');
    await add(dir, env, 'long', `wait-file: ${gate}`);
    const busy = await workingOn(dir, env, 1);
    const other = busy.id === 'agent-001' ? 'agent-002' : 'agent-001';
    // A stale lock on its branch (a killed git leaves one): neither the runner's repair nor a
    // re-created worktree can move the branch, and only a person may remove someone's lock.
    const lock = join(
      dir,
      '.git',
      'refs',
      'heads',
      'agent',
      `${other.slice(-3)}.lock`,
    );
    writeFileSync(lock, '');
    await add(dir, env, 'next');
    const q = await waitFor(
      async () =>
        (await status(dir, env)).agents.find(
          (a: any) => a.id === other && a.state === 'quarantined',
        ),
      { what: `${other} quarantined` },
    );
    expect(q.lastError).toMatch(/^quarantined: the repair failed: .*\.lock/);
    writeFileSync(gate, '');
    const [, next] = await finished(dir, env, 2);
    expect(next!.status).toBe('done');
    expect(
      next!.runs.map((r: any) => [r.outcome, r.errorKind, r.agent]),
    ).toEqual([
      ['released', 'slot-broken', other],
      ['succeeded', null, busy.id],
    ]);
    const job = await cliJson<any>(['status'], { cwd: dir, env });
    expect(job.agents.find((a: any) => a.id === other).state).toBe(
      'quarantined',
    );
    // Fixed by hand; `restart <agent>` ends the quarantine.
    rmSync(lock);
    const r = await runCli(['restart', other, '--json'], {
      cwd: dir,
      env,
      timeoutMs: 200_000,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      agentId: other,
      restarted: true,
      agent: { id: other, state: 'idle' },
    });
    await idle(dir, env, 2);
  });

  it('restart refuses what is not a slot of the running supervisor, with a hint', async () => {
    const { dir, env } = await setup();
    expect((await runCli(['init'], { cwd: dir, env })).code).toBe(0);
    const stopped = await runCli(['restart', 'agent-001'], { cwd: dir, env });
    expect(stopped.code).toBe(1);
    expect(stopped.stderr).toMatch(/not running/);
    await start(dir, env, 1);
    const bad = await runCli(['restart', 'bogus'], { cwd: dir, env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/"bogus" is not an agent id/);
    const unknown = await runCli(['restart', 'agent-004'], { cwd: dir, env });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/agent-004 is not a slot.*\n.*agent-001/s);
    const help = await runCli(['restart', '--help'], { cwd: dir, env });
    expect(help.stdout).toMatch(/quarantined/);
  });
});
