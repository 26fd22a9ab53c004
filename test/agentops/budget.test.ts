import { describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { openSupervisor } from '../../index.js';
import { AGENT_PRESETS } from '../../supervisor/config.js';
import { nextLocalMidnight } from '../../supervisor/store/usage-totals.js';
import { processAlive } from '../helpers/agents.js';
import { useCleanups } from '../helpers/cleanup.js';
import {
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
} from '../helpers/cli.js';
import { fakeTools } from '../helpers/fake-tools.js';
import { tempRepo } from '../helpers/repo.js';

const cleanups = useCleanups();

/**
 * A repository with this configuration and these issues, fake CLIs on PATH, and a supervisor
 * running one `--agent claude` slot.
 */
async function startWith(
  config: object,
  titles: string[],
  extra: Record<string, string> = {},
) {
  const repo = tempRepo();
  cleanups.push(repo.cleanup);
  const tools = fakeTools(cleanups);
  const dir = repo.dir;
  writeFileSync(join(dir, 'supervisor.config.json'), JSON.stringify(config));
  const env = testEnv({
    PATH: `${tools.bin}:${process.env.PATH}`,
    FAKE_STATE_DIR: tools.state,
    SUPERVISOR_AGENT: 'claude',
    ...extra,
  });
  delete env.SUPERVISOR_AGENT_COMMAND;
  for (const t of titles)
    expect((await runCli(['issue', 'add', t], { cwd: dir, env })).code).toBe(0);
  const sup = await startSupervisor(dir, env, [
    '--agents',
    '1',
    '--no-dashboard',
  ]);
  cleanups.push(async () => void (await sup.stop()));
  return { dir, env, state: tools.state };
}

describe('budgets', () => {
  it('budget.perIssue stops the running attempt once its spend passes it, fails the issue with kind budget, and the slot goes on', async () => {
    // Each message of the "spend" issue: 10k input + 1k output tokens = $0.045 at these prices.
    const { dir, env, state } = await startWith(
      {
        prices: { 'claude-sonnet-4-5': { input: 3, output: 15 } },
        budget: { perIssue: 0.05 },
      },
      ['spend without end', 'by claude'],
    );
    const issues = await waitFor(
      async () => {
        const l = await cliJson<any[]>(['issue', 'list'], { cwd: dir, env });
        return l[0].status === 'failed' && l[1].status === 'done' && l;
      },
      { what: 'the spending issue failed and the next one done' },
    );
    expect(issues[0].status).toBe('failed');
    const spent = await cliJson<any>(['issue', 'show', '1'], { cwd: dir, env });
    expect(spent.error).toMatch(
      /^budget: the issue spent \$0\.\d{4}, more than budget\.perIssue \(\$0\.05\); the agent was stopped/,
    );
    // Failed for good: no second attempt would spend less.
    expect(spent.runs).toHaveLength(1);
    expect(spent.runs[0]).toMatchObject({
      outcome: 'failed',
      errorKind: 'budget',
      costSource: 'prices',
      model: 'claude-sonnet-4-5',
    });
    expect(spent.runs[0].costUsd).toBeGreaterThan(0.05);
    expect(spent.usage.costUsd).toBe(spent.runs[0].costUsd);
    // The agent was still running when it was stopped, and is gone.
    const pid = Number(readFileSync(join(state, 'pid-1'), 'utf8'));
    expect(processAlive(pid)).toBe(false);
    expect(readFileSync(spent.runs[0].logPath, 'utf8')).toContain(
      'Still working (step 2).',
    );
  });

  it("budget.perIssue counts the issue's earlier attempts: an attempt after one that spent it fails before its agent starts", async () => {
    const { dir, env, state } = await startWith(
      { budget: { perIssue: 0.04 } },
      ['it fails'],
      { FAKE_COST_USD: '0.0421' },
    );
    const issue = await waitFor(
      async () => {
        const i = await cliJson<any>(['issue', 'show', '1'], { cwd: dir, env });
        return i.status === 'failed' && i;
      },
      { what: 'the issue failed' },
    );
    // Attempt 1 finished its session (reported $0.0421, not stopped) and exited 1.
    expect(issue.runs[0]).toMatchObject({
      attempt: 1,
      errorKind: 'agent-exit',
      costUsd: 0.0421,
    });
    expect(issue.runs[1]).toMatchObject({ attempt: 2, errorKind: 'budget' });
    expect(issue.error).toMatch(
      /^budget: the issue spent \$0\.0421, more than budget\.perIssue \(\$0\.04\)/,
    );
    // The agent ran once: the second attempt never started it.
    const calls = readFileSync(join(state, 'calls'), 'utf8')
      .split('\n')
      .filter(Boolean);
    expect(calls).toHaveLength(1);
  });

  it('budget.daily pauses claiming until the next local day, then claims resume (the clock moved, not waited for)', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const tools = fakeTools(cleanups);
    const saved = { ...process.env };
    cleanups.push(() => {
      process.env = saved;
    });
    // The runners this process starts inherit it.
    process.env.FAKE_STATE_DIR = tools.state;
    process.env.FAKE_COST_USD = '0.0421';
    let offset = 0;
    const env = testEnv();
    const sup = await openSupervisor({
      repo: repo.dir,
      env: { ...process.env, ...env },
      config: {
        agentCommand: AGENT_PRESETS.claude.replace(
          /^claude/,
          join(tools.bin, 'claude'),
        ),
        budget: { daily: 0.04 },
        dashboard: { enabled: false },
      },
      clock: () => Date.now() + offset,
    });
    cleanups.push(() => sup.close());
    sup.addIssue({ title: 'first' });
    await sup.start({ agents: 1 });
    await waitFor(() => sup.getIssue(1).status === 'done', {
      what: 'issue 1 done',
    });
    const status = await waitFor(
      async () => {
        const s = await sup.status();
        return s.pause?.kind === 'budget' && s;
      },
      { what: 'the daily budget pause' },
    );
    const midnight = nextLocalMidnight(Date.now());
    expect(status.pause).toMatchObject({ kind: 'budget', until: midnight });
    expect(status.pause!.text).toMatch(
      // Midnight more than 20 h away (a run between 00:00 and 04:00) is shown with its date.
      /^paused: daily budget until (\d{4}-\d\d-\d\d )?00:00 \(in /,
    );
    expect(status.pause!.reason).toBe(
      '$0.0421 spent today, budget.daily is $0.04',
    );
    expect(status.costs.today.costUsd).toBe(0.0421);

    sup.addIssue({ title: 'second' });
    await waitFor(() => sup.getIssue(2).status === 'queued', {
      what: 'issue 2 fed',
    });
    // Claiming is paused by BullMQ's rate limit until midnight: the job waits, unclaimed.
    const redis = new Redis('redis://127.0.0.1:6379');
    cleanups.push(() => redis.disconnect());
    const limiter = `${sup.prefix}:${sup.queueName}:limiter`;
    expect(await redis.pttl(limiter)).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 1500));
    expect(sup.getIssue(2).status).toBe('queued');

    // The next day: the pause is over and claims resume by themselves.
    offset = midnight - Date.now() + 60_000;
    await waitFor(() => sup.getIssue(2).status === 'done', {
      what: 'issue 2 claimed and done the next day',
    });
  });

  it('supervisor resume ends a daily-budget pause for the rest of the day: the budget does not pause again', async () => {
    const { dir, env } = await startWith(
      { budget: { daily: 0.04 } },
      ['first'],
      {
        FAKE_COST_USD: '0.0421',
      },
    );
    await waitFor(
      async () =>
        (await cliJson<any>(['status'], { cwd: dir, env })).pause?.kind ===
        'budget',
      { what: 'the daily budget pause' },
    );
    const text = await runCli(['status'], { cwd: dir, env });
    expect(text.stdout).toMatch(
      /^paused: daily budget until (\d{4}-\d\d-\d\d )?00:00 \(in .*\) — \$0\.0421 spent today, budget\.daily is \$0\.04$/m,
    );
    await runCli(['issue', 'add', 'second'], { cwd: dir, env });
    const resumed = await runCli(['resume'], { cwd: dir, env });
    expect(resumed.stdout).toMatch(
      /^resumed \(was daily budget until (\d{4}-\d\d-\d\d )?00:00/,
    );
    await waitFor(
      async () =>
        (await cliJson<any>(['issue', 'show', '2'], { cwd: dir, env }))
          .status === 'done',
      { what: 'issue 2 done after resume, the same day' },
    );
    const st = await cliJson<any>(['status'], { cwd: dir, env });
    expect(st.pause).toBeNull();
    expect(st.costs.today.costUsd).toBeCloseTo(0.0842, 9);
  });
});
