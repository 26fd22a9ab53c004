import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import {
  ROOT,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
  type RunningSupervisor,
} from '../helpers/cli.js';
import { tempRepo } from '../helpers/repo.js';
import { launchChromium } from '../helpers/chromium.js';
import { dashboardUrlOf } from './helpers.js';

const ARTIFACTS = join(ROOT, 'test-artifacts');

let browser: Browser;
beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function addIssue(
  dir: string,
  env: Record<string, string>,
  title: string,
  priority: string,
  body: string,
): Promise<void> {
  const r = await runCli(
    ['issue', 'add', title, '--priority', priority, '--body', body],
    { cwd: dir, env },
  );
  expect(r.code, r.stderr).toBe(0);
}

describe('the Parallel Agents page in Chromium', () => {
  it('starts agents, shows issues moving from the queue to agents to results, tails logs, and stops all', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const dir = repo.dir;
    const env = testEnv();
    const sup: RunningSupervisor = await startSupervisor(dir, env, [
      '--agents',
      '0',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    const url = await waitFor(() => dashboardUrlOf(dir), {
      what: 'dashboard URL',
    });

    const page: Page = await browser.newPage({
      viewport: { width: 1280, height: 960 },
    });
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('response', (res) => {
      if (res.status() >= 400)
        problems.push(`HTTP ${res.status()} ${res.url()}`);
    });
    page.on('console', (msg) => {
      if (msg.type() === 'error' && !/Failed to load resource/.test(msg.text()))
        problems.push(`console: ${msg.text()}`);
    });
    await page.goto(url);
    await expect
      .poll(() => page.locator('h1').textContent())
      .toBe('Parallel Agents');
    await page.locator('#live.on').waitFor({ timeout: 10_000 });
    expect(await page.locator('#agents').textContent()).toContain(
      'No agents running',
    );

    // Issues added while no agent runs wait in the queue, in the order they will be taken.
    await addIssue(
      dir,
      env,
      'Fix the typo in the README',
      'urgent',
      'sleep: 600',
    );
    await addIssue(
      dir,
      env,
      'Add retries to the HTTP client',
      'high',
      'sleep: 7000',
    );
    await addIssue(
      dir,
      env,
      'Refactor <script>window.__xss = 1</script> parser',
      'high',
      'sleep: 7000',
    );
    await addIssue(dir, env, 'Document the CLI flags', 'medium', 'sleep: 400');
    await addIssue(dir, env, 'Bump dependencies', 'low', 'sleep: 400');
    await expect
      .poll(() => page.locator('#queue li').count(), { timeout: 10_000 })
      .toBe(5);
    expect(
      await page
        .locator('#queue li')
        .evaluateAll((els) => els.map((e) => e.getAttribute('data-issue'))),
    ).toEqual(['1', '2', '3', '4', '5']);
    expect(
      await page.locator('#queue li[data-issue="3"] .title').textContent(),
    ).toBe('Refactor <script>window.__xss = 1</script> parser');
    expect(
      await page.locator('#queue li[data-issue="1"] .badge').textContent(),
    ).toBe('urgent');

    // Start Agents with a count of 2: two rows appear.
    await page.selectOption('#count', '2');
    await page.click('#start');
    await expect
      .poll(() => page.locator('#agents tr[data-agent]').count(), {
        timeout: 30_000,
      })
      .toBe(2);
    expect(
      await page.locator('#agents tr[data-agent] .agent-id').allTextContents(),
    ).toEqual(['agent-001', 'agent-002']);
    await expect
      .poll(() => page.locator('#control-msg').textContent())
      .toMatch(/Scaling to 2 agents/);

    // Issue #2 moves from the queue to an agent row; #1 (quick) reaches the results.
    const working2 = page.locator('#agents tr[data-state="working"]', {
      hasText: 'Working on #2',
    });
    await working2.waitFor({ timeout: 30_000 });
    await expect
      .poll(() => page.locator('#queue li[data-issue="2"]').count())
      .toBe(0);
    await page
      .locator('#results tr[data-result="1"][data-status="done"]')
      .waitFor({ timeout: 30_000 });
    expect(
      await page.locator('#results tr[data-result="1"]').textContent(),
    ).toContain('issue/1');
    await page
      .locator('#agents tr[data-state="working"]', { hasText: 'Working on #3' })
      .waitFor({ timeout: 30_000 });
    expect(await page.locator('#agents').textContent()).toContain(
      '<script>window.__xss = 1</script>',
    );
    expect(
      await page.evaluate(
        () => (window as unknown as { __xss?: number }).__xss,
      ),
    ).toBeUndefined();
    expect(
      await page
        .locator('#agents script, #queue script, #results script')
        .count(),
    ).toBe(0);

    // Time in state ticks without a reload.
    const since = working2.locator('.since');
    const before = await since.textContent();
    await expect
      .poll(() => since.textContent(), { timeout: 5000 })
      .not.toBe(before);

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({
      path: join(ARTIFACTS, 'dashboard.png'),
      fullPage: true,
    });

    // View Logs: the scripted agent's output, live.
    await working2.locator('button[data-logs]').click();
    await expect.poll(() => page.locator('#log-panel').isVisible()).toBe(true);
    const agentOf2 = await working2.getAttribute('data-agent');
    expect(await page.locator('#log-title').textContent()).toBe(agentOf2);
    await expect
      .poll(() => page.locator('#log-lines').textContent(), { timeout: 10_000 })
      .toContain(
        `scripted agent ${agentOf2} on issue 2: Add retries to the HTTP client`,
      );
    const linesBefore = await page.locator('#log-lines .log-line').count();
    await expect
      .poll(() => page.locator('#log-lines .log-line').count(), {
        timeout: 10_000,
      })
      .toBeGreaterThan(linesBefore);
    expect(await page.locator('#log-lines').textContent()).toMatch(
      /working… \d+ ms/,
    );
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-logs.png') });
    await page.click('#log-close');
    await expect.poll(() => page.locator('#log-panel').isVisible()).toBe(false);

    // Everything finishes; the agents go idle with nothing left.
    await expect
      .poll(() => page.locator('#results tr[data-status="done"]').count(), {
        timeout: 60_000,
      })
      .toBe(5);
    await expect.poll(() => page.locator('#queue li').count()).toBe(0);
    await expect
      .poll(() => page.locator('#agents tr[data-state="idle"]').count(), {
        timeout: 10_000,
      })
      .toBe(2);
    expect(await page.locator('#agents').textContent()).toContain(
      'Idle (no issues)',
    );

    // Stop All: the agents stop and their rows go.
    await page.click('#stop');
    await expect
      .poll(() => page.locator('#agents tr[data-agent]').count(), {
        timeout: 30_000,
      })
      .toBe(0);
    expect(await page.locator('#agents').textContent()).toContain(
      'No agents running',
    );
    const status = JSON.parse(
      (await runCli(['status', '--json'], { cwd: dir, env })).stdout,
    );
    expect(status.desiredAgents).toBe(0);
    expect(status.agents).toHaveLength(0);

    // Bull Board, linked from the page, shows the project's queue.
    await page.click('a[href="queues/"]');
    await page.waitForURL(/\/queues\/?$/);
    await page
      .getByText(`issues · ${dir.split('/').pop()}`)
      .first()
      .waitFor({ timeout: 20_000 });

    expect(
      problems.filter(
        (p) => !/fonts\.googleapis|ERR_NAME_NOT_RESOLVED|net::ERR/.test(p),
      ),
    ).toEqual([]);
    await page.close();
    expect(await sup.stop()).toBe(0);
  });

  it('asks for the token with a login form, then works on the cookie (read-only: controls off)', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const env = testEnv({
      SUPERVISOR_DASHBOARD_TOKEN: 'browser-test-token-0123456789',
    });
    const sup = await startSupervisor(repo.dir, env, [
      '--agents',
      '0',
      '--read-only',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    const url = await waitFor(() => dashboardUrlOf(repo.dir), {
      what: 'dashboard URL',
    });
    const page = await browser.newPage();
    const res = await page.goto(url);
    expect(res?.status()).toBe(401);
    await page.fill('input[name="token"]', 'not the token');
    await page.click('button[type="submit"]');
    await page.getByText('That token is not right.').waitFor();
    await page.fill('input[name="token"]', 'browser-test-token-0123456789');
    await page.click('button[type="submit"]');
    await expect
      .poll(() => page.locator('h1').textContent())
      .toBe('Parallel Agents');
    await page.locator('#live.on').waitFor({ timeout: 10_000 });
    expect(await page.locator('#start').isDisabled()).toBe(true);
    expect(await page.locator('#stop').isDisabled()).toBe(true);
    // The session cookie is HttpOnly: the page's scripts cannot read it.
    expect(await page.evaluate(() => document.cookie)).toBe('');
    await page.click('a[href="queues/"]');
    await page
      .getByText('issues · ', { exact: false })
      .first()
      .waitFor({ timeout: 20_000 });
    await page.close();
  });
});
