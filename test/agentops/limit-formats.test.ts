import { afterEach, describe, expect, it } from 'vitest';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  UsageLimitScanner,
  limitInLine,
  usageLimitOf,
} from '../../agent-runner/usage-limits.js';
import { parseClockTime, parseRetryAfter } from '../../contract/reset-time.js';
import { tempDir } from '../helpers/repo.js';

// Monday 30 November 2026, 11:00 UTC.
const NOW = Date.UTC(2026, 10, 30, 11, 0);

/** The next local wall-clock h:m after NOW (the runner's own time zone). */
function nextLocal(h: number, m: number): number {
  const d = new Date(NOW);
  d.setHours(h, m, 0, 0);
  if (d.getTime() <= NOW) d.setDate(d.getDate() + 1);
  return d.getTime();
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('provider limit messages (the forms docs/agents.md lists)', () => {
  it('Claude Code text forms with a reset clock time and zone', () => {
    expect(
      limitInLine("You've hit your limit · resets 2pm (Europe/Berlin)", NOW),
    ).toMatchObject({
      provider: 'claude',
      resetAt: Date.UTC(2026, 10, 30, 13, 0),
    });
    expect(
      limitInLine(
        "You're out of extra usage · resets 5pm (America/Los_Angeles)",
        NOW,
      )?.resetAt,
    ).toBe(Date.UTC(2026, 11, 1, 1, 0));
    expect(
      limitInLine(
        'Limit reached · resets 11:30am (Asia/Calcutta) · /upgrade to Max or turn on /extra-usage',
        NOW,
      )?.resetAt,
    ).toBe(Date.UTC(2026, 11, 1, 6, 0));
    expect(
      limitInLine('5-hour limit reached ∙ resets 1:30am', NOW)?.resetAt,
    ).toBe(nextLocal(1, 30));
    expect(
      limitInLine('Claude AI usage limit reached|1796040000', NOW),
    ).toMatchObject({ provider: 'claude', resetAt: 1796040000_000 });
  });

  it('Claude Code stream-json rate_limit_event: only "rejected" counts', () => {
    const ev = (status: string) =>
      JSON.stringify({
        type: 'rate_limit_event',
        rate_limit_info: {
          status,
          resetsAt: 1796040000,
          rateLimitType: 'five_hour',
        },
      });
    expect(limitInLine(ev('allowed'), NOW)).toBeUndefined();
    expect(limitInLine(ev('allowed_warning'), NOW)).toBeUndefined();
    expect(limitInLine(ev('rejected'), NOW)).toMatchObject({
      provider: 'claude',
      resetAt: 1796040000_000,
      source: 'stream-json',
    });
    // Seen in the wild: the event written into the middle of another line.
    expect(
      limitInLine(
        `{"type":"assistant","message":{"text":"part${ev('rejected')}`,
        NOW,
      )?.resetAt,
    ).toBe(1796040000_000);
  });

  it('Codex: try again at a clock time, at a date, or in a spoken duration', () => {
    const base =
      "■ You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) or try again";
    expect(limitInLine(`${base} at 5:42 PM.`, NOW)).toMatchObject({
      provider: 'codex',
      resetAt: nextLocal(17, 42),
    });
    expect(
      limitInLine(`${base} in 5 days 22 hours 11 minutes.`, NOW)?.resetAt,
    ).toBe(NOW + ((5 * 24 + 22) * 60 + 11) * 60_000);
    const dated = new Date(2026, 11, 5, 20, 19).getTime();
    expect(
      limitInLine(
        "You've hit your usage limit. Upgrade to Plus to continue using Codex (https://chatgpt.com/explore/plus), or try again at Dec 5th, 2026 8:19 PM.",
        NOW,
      )?.resetAt,
    ).toBe(dated);
    expect(
      limitInLine(
        '{"type":"error","status_code":429,"error":{"type":"usage_limit_reached","resets_at":1796040000,"resets_in_seconds":9568}}',
        NOW,
      ),
    ).toMatchObject({ provider: 'codex', resetAt: 1796040000_000 });
  });

  it('HTTP 429 as Aider (litellm) prints it: no reset time, the default pause applies', () => {
    expect(
      limitInLine(
        'litellm.RateLimitError: AnthropicException - {"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed your rate limit."}}',
        NOW,
      ),
    ).toMatchObject({ provider: 'http-429', resetAt: undefined });
    expect(
      limitInLine('HTTP 429 Too Many Requests (retry-after: 30)', NOW)?.resetAt,
    ).toBe(NOW + 30_000);
  });

  it('ordinary output is not a limit', () => {
    for (const l of [
      'Rate limiting middleware added to src/server.ts',
      'limit the page size to 429 rows',
      'export const LIMIT = 10;',
      '{"type":"result","subtype":"success","total_cost_usd":0.01}',
    ])
      expect(limitInLine(l, NOW)).toBeUndefined();
  });
});

describe('deciding a finished run', () => {
  function statusFile(content?: string): string {
    const dir = tempDir('sup-status-');
    dirs.push(dir);
    const f = join(dir, 'agent-status.json');
    if (content !== undefined) writeFileSync(f, content);
    return f;
  }

  it('the generic contract: exit 75, the status file, and exit 0 never counts', () => {
    const none = statusFile();
    expect(usageLimitOf(75, none, new UsageLimitScanner(), NOW)).toMatchObject({
      provider: 'agent',
      resetAt: undefined,
      source: 'exit-75',
    });
    const file = statusFile(
      JSON.stringify({ retryAfter: '2026-11-30T12:30:00Z', reason: 'quota' }),
    );
    expect(usageLimitOf(1, file, new UsageLimitScanner(), NOW)).toMatchObject({
      resetAt: Date.UTC(2026, 10, 30, 12, 30),
      reason: 'quota',
      source: 'status-file',
    });
    const secs = statusFile(JSON.stringify({ retryAfter: 90 }));
    expect(usageLimitOf(75, secs, new UsageLimitScanner(), NOW)?.resetAt).toBe(
      NOW + 90_000,
    );
    const scanner = new UsageLimitScanner(() => NOW);
    scanner.feed('Claude AI usage limit reached|1796040000\n');
    expect(usageLimitOf(0, file, scanner, NOW)).toBeUndefined();
    expect(usageLimitOf(2, none, new UsageLimitScanner(), NOW)).toBeUndefined();
  });

  it('the scanner joins lines split across chunks and prefers a machine-readable reset', () => {
    const s = new UsageLimitScanner(() => NOW);
    s.feed('{"type":"rate_limit_event","rate_limit_info":{"status":"rej');
    s.feed('ected","resetsAt":1796040000}}\n');
    s.feed("You've hit your limit · resets 2pm (Europe/Berlin)");
    expect(s.finish()?.resetAt).toBe(1796040000_000);
  });
});

describe('times people type', () => {
  it('--until / retryAfter forms', () => {
    expect(parseRetryAfter('90', NOW)).toBe(NOW + 90_000);
    expect(parseRetryAfter('15m', NOW)).toBe(NOW + 900_000);
    expect(parseRetryAfter('2 hours 30 minutes', NOW)).toBe(NOW + 9_000_000);
    expect(parseRetryAfter('2026-12-01T08:00:00Z', NOW)).toBe(
      Date.UTC(2026, 11, 1, 8),
    );
    expect(parseRetryAfter('14:00', NOW)).toBe(nextLocal(14, 0));
    expect(parseRetryAfter('soon', NOW)).toBeUndefined();
    expect(parseClockTime('5', NOW)).toBeUndefined();
  });
});
