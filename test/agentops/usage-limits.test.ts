import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { useCleanups } from '../helpers/cleanup.js';
import {
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
} from '../helpers/cli.js';
import { tempRepo } from '../helpers/repo.js';
import { FAKE_PROVIDER_CLI, fakeTools } from '../helpers/fake-tools.js';

const cleanups = useCleanups();

async function setup(extra: Record<string, string>) {
  const repo = tempRepo();
  cleanups.push(repo.cleanup);
  const tools = fakeTools(cleanups);
  const env = testEnv({
    PATH: `${tools.bin}:${process.env.PATH}`,
    FAKE_STATE_DIR: tools.state,
    // One attempt per issue: an issue that spent its attempt on the limit would fail.
    SUPERVISOR_ATTEMPTS: '1',
    SUPERVISOR_LIMIT_MARGIN: '0',
    ...extra,
  });
  // A preset (--agent) is used only when no agent command is set.
  if (extra.SUPERVISOR_AGENT) delete env.SUPERVISOR_AGENT_COMMAND;
  return { dir: repo.dir, env, state: tools.state };
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

async function addIssues(dir: string, env: Record<string, string>, n: number) {
  for (let i = 1; i <= n; i++) {
    const r = await runCli(['issue', 'add', `Limit issue ${i}`], {
      cwd: dir,
      env,
    });
    expect(r.code).toBe(0);
  }
}

async function allDone(dir: string, env: Record<string, string>, n: number) {
  const list = await cliJson<any[]>(['issue', 'list'], { cwd: dir, env });
  if (list.some((i) => i.status === 'failed'))
    throw new Error(`an issue failed: ${JSON.stringify(list)}`);
  return list.length === n && list.every((i) => i.status === 'done')
    ? list
    : false;
}

async function runsOf(dir: string, env: Record<string, string>, ids: number[]) {
  const runs: any[] = [];
  for (const id of ids) {
    const shown = await cliJson<any>(['issue', 'show', String(id)], {
      cwd: dir,
      env,
    });
    runs.push(...shown.runs);
  }
  return runs;
}

/**
 * The agent reports a limit once: the pool pauses until the announced reset, no attempt is spent
 * (one attempt per issue, all done), nobody claims before the reset, and claiming resumes by itself.
 */
async function limitScenario(
  env0: Record<string, string>,
  expectedProvider: string,
) {
  const { dir, env, state } = await setup({
    FAKE_RESET_MS: '5000',
    ...env0,
  });
  await addIssues(dir, env, 3);
  await start(dir, env, 2);
  const done = await waitFor(() => allDone(dir, env, 3), {
    timeoutMs: 90_000,
    what: '3 issues done after the reset',
  });
  // Two agents may both have run into it: the earliest reset bounds the pause from below.
  const resets = readFileSync(join(state, 'limits'), 'utf8')
    .trim()
    .split('\n')
    .map(Number);
  const reset = Math.min(...resets);
  // The pause the supervisor recorded (SQLite, the single writer) from the runner's report.
  const db = new Database(join(dir, '.supervisor/supervisor.db'), {
    readonly: true,
  });
  const recorded = JSON.parse(
    (
      db.prepare("SELECT value FROM settings WHERE key = 'pause'").get() as {
        value: string;
      }
    ).value,
  );
  db.close();
  expect(recorded).toMatchObject({
    kind: 'usage-limit',
    provider: expectedProvider,
  });
  // Until the reset the agent announced (or a second from the report, if that came later).
  expect(recorded.until).toBeGreaterThanOrEqual(Math.max(...resets));
  const runs = await runsOf(
    dir,
    env,
    done.map((i: any) => i.id),
  );
  expect(runs.filter((r) => r.outcome === 'failed')).toEqual([]);
  const released = runs
    .filter((r) => r.outcome === 'released')
    .sort((a, b) => a.finishedAt - b.finishedAt);
  expect(released).toHaveLength(resets.length);
  for (const r of released) expect(r.error).toMatch(/^usage limit/);
  // No claim between the limit and the reset: the whole pool waited.
  for (const r of runs)
    if (r.startedAt > released[0].finishedAt)
      expect(r.startedAt).toBeGreaterThanOrEqual(reset - 100);
  // Over: status shows no pause any more, though nobody lifted it (the Redis key expired).
  const after = await cliJson<any>(['status'], { cwd: dir, env });
  expect(after.pause).toBeNull();
}

describe('usage limits pause the pool and resume it by themselves', () => {
  it('Claude Code text form "Claude AI usage limit reached|<epoch>"', async () => {
    await limitScenario(
      { SUPERVISOR_AGENT: 'claude', FAKE_LIMIT: 'claude-text' },
      'claude',
    );
  });

  it('Claude Code stream-json rate_limit_event (status rejected, resetsAt)', async () => {
    await limitScenario(
      { SUPERVISOR_AGENT: 'claude', FAKE_LIMIT: 'claude-stream' },
      'claude',
    );
  });

  it('Codex "You\'ve hit your usage limit … try again in …"', async () => {
    await limitScenario(
      { SUPERVISOR_AGENT: 'codex', FAKE_LIMIT: 'codex-text' },
      'codex',
    );
  });

  it('the generic contract: exit 75 with $AGENT_STATUS_FILE {"retryAfter": ISO}', async () => {
    await limitScenario(
      {
        SUPERVISOR_AGENT_COMMAND: `node ${FAKE_PROVIDER_CLI}`,
        FAKE_LIMIT: 'exit-75',
      },
      'agent',
    );
  });
});

describe('supervisor pause / resume', () => {
  it('pauses claiming until resumed, and for a while with --for', async () => {
    const { dir, env } = await setup({});
    await start(dir, env, 1);
    const p = await cliJson<any>(['pause', '--reason', 'maintenance window'], {
      cwd: dir,
      env,
    });
    expect(p.pause).toMatchObject({ kind: 'manual', until: null });
    const shown = await runCli(['status'], { cwd: dir, env });
    expect(shown.stdout).toContain(
      'paused: paused by hand until resumed — maintenance window',
    );
    await addIssues(dir, env, 1);
    // Fed and waiting, but not claimed while paused.
    await waitFor(
      async () =>
        (await cliJson<any>(['status'], { cwd: dir, env })).queue?.waiting ===
          0 &&
        (await cliJson<any[]>(['issue', 'list'], { cwd: dir, env }))[0]
          .status === 'queued',
      { what: 'the issue queued' },
    );
    await new Promise((r) => setTimeout(r, 1500));
    expect(
      (await cliJson<any[]>(['issue', 'list'], { cwd: dir, env }))[0].status,
    ).toBe('queued');
    const r = await cliJson<any>(['resume'], { cwd: dir, env });
    expect(r.was.kind).toBe('manual');
    await waitFor(() => allDone(dir, env, 1), { what: 'issue 1 done' });

    const timed = await cliJson<any>(['pause', '--for', '3s'], {
      cwd: dir,
      env,
    });
    const until = timed.pause.until as number;
    expect(timed.pause.text).toMatch(
      /^paused: paused by hand until \d\d:\d\d \(in [123]s\)$/,
    );
    await addIssues(dir, env, 1);
    const done = await waitFor(() => allDone(dir, env, 2), {
      what: 'issue 2 done after the pause ended by itself',
    });
    const runs = await runsOf(dir, env, [done[done.length - 1].id]);
    expect(runs[0].startedAt).toBeGreaterThanOrEqual(until - 100);
  });

  it('refuses a bad duration with a hint (exit 2)', async () => {
    const { dir, env } = await setup({});
    await runCli(['init'], { cwd: dir, env });
    const r = await runCli(['pause', '--for', 'soon'], { cwd: dir, env });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--for "soon" is not a duration/);
    expect(r.stderr).toMatch(/hint: durations/);
  });
});
