import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../helpers/chromium.js';
import { ROOT, cliJson, waitFor } from '../helpers/cli.js';
import { useCleanups } from '../helpers/cleanup.js';
import { git } from '../helpers/repo.js';
import { landingWorld } from '../land/helpers.js';
import { dashboardUrlOf } from './helpers.js';

const ARTIFACTS = join(ROOT, 'test-artifacts');
const cleanups = useCleanups();

let browser: Browser;
beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

describe('the review section in Chromium', () => {
  it('shows done issues with diffstat, behind, mergeable and conflicts between them, keeps a failed attempt’s work as a ref, and lands and cancels by clicking', async () => {
    const w = landingWorld(cleanups, { SUPERVISOR_ATTEMPTS: '1' });
    // #1 and #2 both create shared.txt (each with its own text): each lands alone, not both.
    const a = await w.add('first take on shared', 'write: shared.txt');
    const b = await w.add('second take on shared', 'write: shared.txt');
    const failing = await w.add(
      'gives up half way',
      'write: partial.txt\nexit: 1',
    );
    await w.start(['--agents', '2']);
    await w.waitStatus(a, ['done']);
    await w.waitStatus(b, ['done']);
    await w.waitStatus(failing, ['failed']);
    const url = await waitFor(() => dashboardUrlOf(w.dir), {
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
    await page.goto(url);
    await page.locator('#live.on').waitFor({ timeout: 20_000 });

    const row = (id: number) =>
      page.locator(`#review tr[data-review-issue="${id}"]`);
    await row(a).waitFor({ timeout: 20_000 });
    // Done issues: their diffstat, 0 behind, each mergeable alone, and the conflict between them.
    for (const [id, other] of [
      [a, b],
      [b, a],
    ] as const) {
      expect(await row(id).getAttribute('data-status')).toBe('done');
      expect(await row(id).textContent()).toMatch(/\+1 −0\s*1 file/);
      expect(
        await row(id)
          .locator('td[data-mergeable]')
          .getAttribute('data-mergeable'),
      ).toBe('true');
      await row(id)
        .locator(`[data-conflicts-with="${other}"]`)
        .waitFor({ timeout: 20_000 });
      expect(
        await row(id).locator(`[data-conflicts-with="${other}"]`).textContent(),
      ).toBe(`conflicts with #${other} in shared.txt`);
    }
    // The failed attempt: its error ends with the agent's own last lines, its work is a ref.
    const ref = `refs/supervisor/attempts/${failing}/1`;
    expect(await row(failing).getAttribute('data-status')).toBe('failed');
    expect(
      await row(failing).locator(`[data-work-ref="${ref}"]`).textContent(),
    ).toMatch(/work kept: refs\/supervisor\/attempts\/3\/1 \+1 −0\s*1 file/);
    expect(git(w.dir, 'show', '--name-only', '--format=', ref)).toBe(
      'partial.txt',
    );
    expect(git(w.dir, 'show', `${ref}:partial.txt`)).toMatch(
      /resolved 3: gives up half way/,
    );
    const failedJson = await w.show(failing);
    expect(failedJson.runs![0]).toMatchObject({
      outcome: 'failed',
      commitSha: git(w.dir, 'rev-parse', ref),
    });
    expect(await row(failing).locator('[data-review="land"]').count()).toBe(0);

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({
      path: join(ARTIFACTS, 'dashboard-review.png'),
      fullPage: true,
    });

    // Land #1 by clicking: main gets it, its row goes, #2 now conflicts with main.
    const before = git(w.dir, 'rev-parse', 'main');
    await row(a).locator('[data-review="land"]').click();
    await expect
      .poll(() => page.locator('#review-msg').textContent(), {
        timeout: 60_000,
      })
      .toMatch(new RegExp(`Issue #${a} landed as [0-9a-f]{10}`));
    await expect.poll(() => row(a).count(), { timeout: 20_000 }).toBe(0);
    const landed = await w.show(a);
    expect(landed.status).toBe('merged');
    expect(git(w.dir, 'rev-parse', 'main')).toBe(landed.landedSha);
    expect(git(w.dir, 'rev-parse', `${landed.landedSha}~1`)).toBe(before);
    expect(git(w.dir, 'show', 'main:shared.txt')).toMatch(/resolved 1:/);
    expect(landed.history!.at(-1)).toMatchObject({
      to: 'merged',
      actor: 'lander',
    });
    await expect
      .poll(
        () =>
          row(b).locator('td[data-mergeable]').getAttribute('data-mergeable'),
        { timeout: 20_000 },
      )
      .toBe('false');
    expect(await row(b).textContent()).toMatch(/conflicts\s*shared\.txt/);

    // Cancel #2 by clicking: cancelled, recorded as the dashboard's doing.
    await row(b).locator('[data-review="cancel"]').click();
    await expect
      .poll(() => page.locator('#review-msg').textContent(), {
        timeout: 20_000,
      })
      .toBe(`Issue #${b} is cancelled.`);
    const cancelled = await cliJson<{
      status: string;
      history: Array<{ to: string; actor: string }>;
    }>(['issue', 'show', String(b)], { cwd: w.dir, env: w.env });
    expect(cancelled.status).toBe('cancelled');
    expect(cancelled.history.at(-1)).toMatchObject({
      to: 'cancelled',
      actor: 'dashboard',
    });
    await expect.poll(() => row(b).count(), { timeout: 20_000 }).toBe(0);
    expect(problems).toEqual([]);
  });
});
