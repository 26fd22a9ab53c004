import { describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AGENT_PRESETS } from '../../supervisor/config.js';
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

/** Codex reports no model and no cost: the `*` price applies (USD per million tokens). */
const PRICES = { '*': { input: 1.25, output: 10, cacheRead: 0.125 } };
const CODEX_COST = (1500 * 1.25 + 300 * 10 + 500 * 0.125) / 1e6;

describe('tokens and cost per run', () => {
  it('are read from the presets (Claude Code stream-json, Codex exec --json), logged readably, stored per run and totalled in issue list, status, the page and /metrics', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const tools = fakeTools(cleanups);
    const dir = repo.dir;
    writeFileSync(
      join(dir, 'supervisor.config.json'),
      JSON.stringify({ prices: PRICES }),
    );
    const env = testEnv({
      PATH: `${tools.bin}:${process.env.PATH}`,
      FAKE_STATE_DIR: tools.state,
      FAKE_COST_USD: '0.0421',
      FAKE_MODEL: 'claude-sonnet-4-5',
      // Each issue says which preset resolves it (the title picks the command).
      SUPERVISOR_AGENT_COMMAND: `case "$ISSUE_TITLE" in *codex*) ${AGENT_PRESETS.codex};; *) ${AGENT_PRESETS.claude};; esac`,
    });
    for (const t of ['by claude', 'by codex'])
      expect((await runCli(['issue', 'add', t], { cwd: dir, env })).code).toBe(
        0,
      );
    const sup = await startSupervisor(dir, env, ['--agents', '1']);
    cleanups.push(async () => void (await sup.stop()));
    await waitFor(
      async () =>
        (await cliJson<any[]>(['issue', 'list'], { cwd: dir, env })).every(
          (i) => i.status === 'done',
        ),
      { what: 'both issues done' },
    );

    const claude = await cliJson<any>(['issue', 'show', '1'], {
      cwd: dir,
      env,
    });
    expect(claude.runs[0]).toMatchObject({
      costUsd: 0.0421,
      costSource: 'reported',
      inputTokens: 1200,
      outputTokens: 450,
      cacheReadTokens: 4000,
      cacheWriteTokens: 300,
      model: 'claude-sonnet-4-5',
      turns: 3,
    });
    const codex = await cliJson<any>(['issue', 'show', '2'], { cwd: dir, env });
    // Codex's input_tokens include the cached ones: stored apart.
    expect(codex.runs[0]).toMatchObject({
      costSource: 'prices',
      inputTokens: 1500,
      outputTokens: 300,
      cacheReadTokens: 500,
      cacheWriteTokens: 0,
      model: null,
      turns: 1,
    });
    expect(codex.runs[0].costUsd).toBeCloseTo(CODEX_COST, 9);
    expect(codex.usage).toMatchObject({ runs: 1, inputTokens: 1500 });

    const show = await runCli(['issue', 'show', '1'], { cwd: dir, env });
    expect(show.stdout).toContain('cost: $0.0421 · 6.0k tok over 1 run(s)');

    // The attempt logs read as text; the JSON events were parsed, not printed.
    const claudeLog = readFileSync(claude.runs[0].logPath, 'utf8');
    expect(claudeLog).toContain(
      'claude: session started · model claude-sonnet-4-5',
    );
    expect(claudeLog).toContain('→ Write issue-1.txt');
    expect(claudeLog).toContain('← File created successfully');
    expect(claudeLog).toContain('claude: success · 3 turns · $0.0421');
    expect(claudeLog).not.toContain('{"type"');
    const codexLog = readFileSync(codex.runs[0].logPath, 'utf8');
    expect(codexLog).toContain('$ bash -lc ls');
    expect(codexLog).toContain(
      'codex: turn completed · 2.0k in (500 cached), 300 out tokens',
    );
    expect(codexLog).not.toContain('{"type"');

    // Totals: per issue and for the page in `issue list`, today and this week in `status`.
    const list = await runCli(['issue', 'list'], { cwd: dir, env });
    expect(list.stdout).toMatch(/COST/);
    expect(list.stdout).toMatch(/#1 .*\$0\.0421 · 6\.0k tok/);
    expect(list.stdout).toMatch(/#2 .*\$0\.0049 · 2\.3k tok/);
    const total = 0.0421 + CODEX_COST;
    expect(list.stdout).toContain(
      `total: $${total.toFixed(4)} · 8.3k tok over 2 run(s) of the 2 issue(s) shown`,
    );
    const listJson = await cliJson<any[]>(['issue', 'list'], { cwd: dir, env });
    expect(listJson[0].usage).toMatchObject({ costUsd: 0.0421, runs: 1 });
    const st = await cliJson<any>(['status'], { cwd: dir, env });
    for (const period of ['today', 'week'] as const) {
      expect(st.costs[period]).toMatchObject({
        inputTokens: 2700,
        outputTokens: 750,
        cacheReadTokens: 4500,
        cacheWriteTokens: 300,
        runs: 2,
      });
      expect(st.costs[period].costUsd).toBeCloseTo(total, 9);
    }
    const stText = await runCli(['status'], { cwd: dir, env });
    expect(stText.stdout).toContain(
      `cost: today $${total.toFixed(4)} · 8.3k tok, this week $${total.toFixed(4)} · 8.3k tok`,
    );

    // The page: one totals line under the summary.
    const page = await (
      await fetch(new URL('/', st.supervisor.dashboardUrl))
    ).text();
    expect(page).toContain(
      `<p data-testid="costs">Cost: today <span class="mono">$${total.toFixed(4)} · 8.3k tok</span> · this week <span class="mono">$${total.toFixed(4)} · 8.3k tok</span></p>`,
    );

    // Prometheus counters by model, from the kept totals.
    const metrics = await (
      await fetch(new URL('/metrics', st.supervisor.dashboardUrl))
    ).text();
    expect(metrics).toContain(
      'supervisor_agent_cost_usd_total{model="claude-sonnet-4-5"} 0.0421',
    );
    expect(metrics).toContain(
      `supervisor_agent_cost_usd_total{model="unknown"} ${CODEX_COST}`,
    );
    expect(metrics).toContain(
      'supervisor_agent_tokens_total{model="claude-sonnet-4-5",kind="cache_read"} 4000',
    );
    expect(metrics).toContain(
      'supervisor_agent_tokens_total{model="unknown",kind="input"} 1500',
    );
  });
});
