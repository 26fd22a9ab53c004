/**
 * /metrics as Prometheus tooling sees it (issue 15): `promtool check metrics` clean, counters
 * that only count, the example alert rules valid (`promtool check rules`), and every metric the
 * rules and the Grafana dashboard in deploy/ use actually exported.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { ROOT } from '../helpers/cli.js';
import { http, startTestDashboard, type TestDashboard } from './helpers.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const RULES = join(ROOT, 'deploy/prometheus/alerts.yml');
const GRAFANA = join(ROOT, 'deploy/grafana/agent-supervisor.json');

/** promtool, which the suite needs (test/provision.sh installs it): a missing one fails. */
function promtool(args: string[], input?: string) {
  const r = spawnSync('promtool', args, {
    input,
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.error)
    throw new Error(
      `promtool is needed (apt-get install prometheus, or run test/provision.sh): ${r.error.message}`,
    );
  return r;
}

async function scrape(t: TestDashboard): Promise<string> {
  const r = await http('GET', `${t.url}/metrics`);
  expect(r.status).toBe(200);
  return r.text;
}

/** A history with every kind of row the metrics count: runs of each outcome, landings. */
function seed(t: TestDashboard): void {
  const { issues, runs, db } = t.ctx;
  const outcomes = ['succeeded', 'failed', 'lost', 'released', 'running'];
  outcomes.forEach((outcome, k) => {
    const i = issues.add({ title: `i${k}` });
    runs.upsert(i.id, `issue-${i.id}`, 1, {
      startedAt: 1000,
      outcome: 'running',
    });
    if (outcome !== 'running')
      runs.upsert(i.id, `issue-${i.id}`, 1, {
        outcome: outcome as 'failed',
        finishedAt: 1000 + (k + 1) * 40_000,
      });
  });
  db.prepare(
    `INSERT INTO landings (issue_id, attempt, strategy, base_branch, started_at) VALUES (1, 1, 'rebase', 'main', 1)`,
  ).run();
  db.prepare(`UPDATE landings SET state = 'merged' WHERE issue_id = 1`).run();
}

/** Metric names an expression uses (histogram series mapped to their family). */
function metricNames(expr: string): string[] {
  const names = expr.match(/\bsupervisor_[a-z_]+|\bprocess_[a-z_]+/g) ?? [];
  return names.map((n) => n.replace(/_(bucket|sum|count)$/, ''));
}

describe('/metrics', () => {
  it('passes promtool check metrics, and its counters only count', async () => {
    const t = await startTestDashboard();
    cleanups.push(() => t.close());
    seed(t);
    const text = await scrape(t);
    const r = promtool(['check', 'metrics'], text);
    expect(`${r.stdout}${r.stderr}`).toBe('');
    expect(r.status).toBe(0);
    // No placeholder HELP texts: each is a sentence, not a key.
    for (const [, name, help] of text.matchAll(/^# HELP (\S+) (.*)$/gm))
      expect(help!.split(' ').length, `${name}: ${help}`).toBeGreaterThan(2);
    // A counter never holds a state: nothing running inside supervisor_runs_total.
    expect(text).not.toMatch(/_total\{[^}]*outcome="running"/);
    expect(text).toContain('supervisor_runs_total{outcome="lost"} 1');
    expect(text).toContain('supervisor_runs_total{outcome="released"} 1');
    expect(text).toContain('supervisor_runs_started_total 5');
    expect(text).toContain('supervisor_landings_total{outcome="merged"} 1');
    expect(text).toMatch(/^supervisor_queue_oldest_waiting_seconds \d/m);
    expect(text).toContain(
      'supervisor_run_duration_seconds_count{outcome="succeeded"} 1',
    );
    // The gauges the alert rules need, by state.
    for (const s of ['idle', 'working', 'crashed', 'quarantined'])
      expect(text).toContain(`supervisor_agents{state="${s}"} 0`);
    expect(text).toMatch(/^supervisor_agents_quarantined 0$/m);
    for (const name of [
      'supervisor_agent_restarts_total',
      'supervisor_agent_timeouts_total',
      'supervisor_agent_oom_kills_total',
      'supervisor_lease_losses_total',
    ])
      expect(text).toMatch(new RegExp(`^# TYPE ${name} counter$`, 'm'));
  });

  it('ships alert rules promtool accepts and a Grafana dashboard, both using only exported metrics', async () => {
    const rules = promtool(['check', 'rules', RULES]);
    expect(r(rules)).toMatch(/SUCCESS: \d+ rules found/);
    expect(rules.status).toBe(0);

    const t = await startTestDashboard();
    cleanups.push(() => t.close());
    const exported = new Set(
      [...(await scrape(t)).matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!),
    );
    const used = new Set<string>();
    const doc = parse(readFileSync(RULES, 'utf8')) as {
      groups: Array<{ rules: Array<{ expr: string }> }>;
    };
    for (const g of doc.groups)
      for (const rule of g.rules)
        metricNames(rule.expr).forEach((n) => used.add(n));
    const grafana = JSON.parse(readFileSync(GRAFANA, 'utf8')) as {
      panels: Array<{ targets: Array<{ expr: string }> }>;
    };
    expect(grafana.panels.length).toBeGreaterThan(5);
    for (const p of grafana.panels)
      for (const target of p.targets)
        metricNames(target.expr).forEach((n) => used.add(n));
    expect(used.size).toBeGreaterThan(10);
    for (const n of used) expect(exported, n).toContain(n);
  });
});

function r(x: { stdout: string; stderr: string }): string {
  return `${x.stdout}${x.stderr}`;
}
