/**
 * The page on a phone and for a keyboard or a screen reader (issue 15), in Chromium: no
 * horizontal overflow from 360 px up, each agent's state, issue, time, environment, CPU/memory
 * and log; axe-core finds no serious or critical violation; the log drawer takes keyboard focus
 * and gives it back; an empty repository guides to the first issue and start.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { ROOT } from '../helpers/cli.js';
import { launchChromium } from '../helpers/chromium.js';
import { getSetting } from '../../supervisor/store/db.js';
import { startTestDashboard, type TestDashboard } from './helpers.js';

const AXE = readFileSync(
  join(ROOT, 'node_modules/axe-core/axe.min.js'),
  'utf8',
);

let browser: Browser;
const cleanups: Array<() => Promise<void> | void> = [];
beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await browser?.close();
});

async function dashboard(): Promise<TestDashboard> {
  const t = await startTestDashboard();
  cleanups.push(() => t.close());
  return t;
}

/** A repository with history: an agent slot, a queue, results with long names. */
function seed(t: TestDashboard): void {
  const { issues, slots } = t.ctx;
  slots.ensure(1, join(t.ctx.paths.root, '.worktrees/agent-001'), 'agent/001');
  slots.setState('agent-001', 'crashed', {
    lastError:
      'the runner exited with code 1 after a very long explanation '.repeat(3),
  });
  issues.add({
    title: `A waiting issue with a long title ${'that goes on '.repeat(8)}`,
    priority: 'urgent',
  });
  const done = issues.add({
    title: 'Finished work on a very long branch name',
  });
  issues.update(done.id, {
    status: 'done',
    agent: 'agent-001',
    branch: `issue/${done.id}`,
    commit: 'a'.repeat(40),
  });
  const failed = issues.add({ title: 'Failed work' });
  issues.update(failed.id, {
    status: 'failed',
    error: 'agent exited with code 3',
  });
}

async function open(url: string, width: number): Promise<Page> {
  const page = await browser.newPage({ viewport: { width, height: 800 } });
  cleanups.push(() => page.close());
  await page.goto(url);
  await page.waitForSelector('#live.on', { timeout: 30_000 });
  return page;
}

const overflow = (page: Page) =>
  page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    width: window.innerWidth,
    wide: Array.from(document.querySelectorAll('body *'))
      .filter((el) => {
        const r = el.getBoundingClientRect();
        return (
          r.width > 0 &&
          r.right > window.innerWidth + 1 &&
          !el.closest('.scroll-x')
        );
      })
      .slice(0, 5)
      .map((el) => `${el.tagName.toLowerCase()}.${el.className}`),
  }));

async function axe(page: Page): Promise<string[]> {
  // Through DevTools: the page's Content-Security-Policy (rightly) refuses inline scripts.
  await page.evaluate(AXE);
  const violations = (await page.evaluate(async () => {
    const r = await (
      window as unknown as {
        axe: { run: (o: unknown) => Promise<{ violations: unknown[] }> };
      }
    ).axe.run({ resultTypes: ['violations'] });
    return r.violations;
  })) as Array<{
    id: string;
    impact: string;
    nodes: Array<{ target: string[]; failureSummary: string }>;
  }>;
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map(
      (v) =>
        `${v.id} (${v.impact}): ${v.nodes
          .slice(0, 3)
          .map((n) => `${n.target.join(' ')} — ${n.failureSummary}`)
          .join('; ')}`,
    );
}

describe('the page on a phone, for keyboards and screen readers', () => {
  it('has no horizontal overflow at 360 and 390 px, and shows each agent with environment and resources', async () => {
    const t = await dashboard();
    seed(t);
    for (const width of [390, 360]) {
      const page = await open(t.url, width);
      await page.waitForSelector('#agents tr[data-agent="agent-001"]');
      const o = await overflow(page);
      expect(o.scroll, `${width}px: ${o.wide.join(', ')}`).toBeLessThanOrEqual(
        o.width,
      );
      expect(o.wide, `${width}px`).toEqual([]);
    }
    const page = await open(t.url, 1280);
    const row = page.locator('#agents tr[data-agent="agent-001"]');
    await expect.poll(() => row.getAttribute('data-state')).toBe('crashed');
    const headers = await page
      .locator('#agents thead th')
      .evaluateAll((ths) => ths.map((th) => th.textContent?.trim()));
    expect(headers).toEqual([
      'State',
      'Agent',
      'Issue',
      'In state',
      'Environment',
      'CPU / memory',
      'Runtime',
      'Actions',
    ]);
    // Without measurements the cells say so ("—"), never blank or "0".
    expect(await row.locator('td.resources-cell').textContent()).toMatch(
      /CPU\s+—\s+mem\s+—/,
    );
    expect(await row.locator('td.env').textContent()).toBe('—');
  });

  it('shows a quarantined agent with why, and restarts it from its row', async () => {
    const t = await dashboard();
    seed(t);
    t.ctx.slots.setState('agent-001', 'quarantined', {
      lastError: 'quarantined: the repair failed: a stale lock',
    });
    t.fakeRunning();
    const page = await open(t.url, 390);
    const row = page.locator('#agents tr[data-agent="agent-001"]');
    await expect.poll(() => row.getAttribute('data-state')).toBe('quarantined');
    expect(await row.locator('td.activity').textContent()).toBe(
      'Quarantined (takes no jobs until restarted): the repair failed: a stale lock',
    );
    await row.getByRole('button', { name: 'Restart agent-001' }).click();
    await expect
      .poll(() => page.locator('#control-msg').textContent())
      .toMatch(/^Restarting agent-001: its job goes back to the queue/);
    expect(
      Object.keys(JSON.parse(getSetting(t.ctx.db, 'restart_requests') ?? '{}')),
    ).toEqual(['agent-001']);
    const o = await overflow(page);
    expect(o.wide, '390px').toEqual([]);
  });

  it('passes axe-core with no serious or critical violation, with data and empty', async () => {
    const t = await dashboard();
    seed(t);
    for (const width of [1280, 390])
      expect(await axe(await open(t.url, width)), `${width}px`).toEqual([]);
    const empty = await dashboard();
    expect(await axe(await open(empty.url, 1280)), 'empty').toEqual([]);
  });

  it('moves keyboard focus into the log drawer and back, and closes it with Escape', async () => {
    const t = await dashboard();
    seed(t);
    const page = await open(t.url, 1280);
    const button = page.locator('[data-logs="agent-001"]');
    await button.focus();
    await page.keyboard.press('Enter');
    await page.waitForSelector('#log-panel:not([hidden])');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe(
      'log-close',
    );
    await page.keyboard.press('Escape');
    await page.waitForSelector('#log-panel', { state: 'hidden' });
    expect(
      await page.evaluate(() =>
        document.activeElement?.getAttribute('data-logs'),
      ),
    ).toBe('agent-001');
  });

  it('guides an empty repository to its first issue and to start, instead of an error', async () => {
    const t = await dashboard();
    const page = await open(t.url, 390);
    const guide = page.locator('[data-guide="first-steps"]');
    await guide.waitFor();
    const text = (await guide.textContent()) ?? '';
    expect(text).toContain('supervisor issue add');
    expect(text).toContain('supervisor start --agents');
    expect(await page.locator('#summary .error').count()).toBe(0);
    // The first issue replaces the guide with the usual summary.
    t.ctx.issues.add({ title: 'the first issue' });
    await guide.waitFor({ state: 'detached', timeout: 30_000 });
  });
});
