import { readFileSync } from 'node:fs';
import {
  parseClockTime,
  parseRetryAfter,
  parseSpokenDuration,
} from '../contract/reset-time.js';

/** A provider limit an agent ran into: its attempt is handed back, claiming pauses until `resetAt`. */
export interface UsageLimit {
  /** claude | codex | http-429 | agent (the generic contract). */
  provider: string;
  /** When the provider said it resets (ms); undefined: it did not say (the default pause applies). */
  resetAt: number | undefined;
  /** The line or reason that gave it away (one line, at most 200 characters). */
  reason: string;
  source: 'output' | 'stream-json' | 'exit-75' | 'status-file';
  /** The reset came machine-readable (an epoch, stream-json), not read from a sentence. */
  exact?: boolean;
}

/** The generic contract's exit code: EX_TEMPFAIL from sysexits.h. */
export const EX_TEMPFAIL = 75;

const MAX_LINE = 64 * 1024;

const clip = (s: string) => s.replace(/\s+/g, ' ').trim().slice(0, 200);

/** One line of agent output → a limit, if it is one of the recognised forms (docs/agents.md). */
export function limitInLine(
  line: string,
  now = Date.now(),
): UsageLimit | undefined {
  // Cheap filter first: every form below holds one of these words.
  if (!/limit|429|too many requests|extra usage/i.test(line)) return undefined;

  // Claude Code stream-json: {"type":"rate_limit_event","rate_limit_info":{"status":"rejected",
  // "resetsAt":<epoch s>,"rateLimitType":"five_hour",...}}. Read by pattern, not JSON.parse: the
  // CLI has been seen writing this event into the middle of another line.
  if (line.includes('"rate_limit_event"')) {
    const status = /"status"\s*:\s*"([a-z_]+)"/.exec(line)?.[1];
    if (status !== 'rejected') return undefined;
    const at = /"resetsAt"\s*:\s*(\d+)/.exec(line)?.[1];
    const type = /"rateLimitType"\s*:\s*"([a-z_]+)"/.exec(line)?.[1];
    return {
      provider: 'claude',
      resetAt: at ? epoch(at) : undefined,
      reason: `Claude ${type ? `${type.replace('_', '-')} ` : ''}rate limit rejected the request`,
      source: 'stream-json',
      exact: at !== undefined,
    };
  }

  // Claude Code (older): "Claude AI usage limit reached|1750000000".
  const legacy = /Claude AI usage limit reached\|(\d{9,13})/.exec(line);
  if (legacy)
    return {
      provider: 'claude',
      resetAt: epoch(legacy[1]!),
      reason: 'Claude AI usage limit reached',
      source: 'output',
      exact: true,
    };

  // Claude Code: "You've hit your limit · resets 2pm (Europe/Berlin)", "5-hour limit reached ∙
  // resets 1:30am", "You're out of extra usage · resets 5pm (America/Los_Angeles)".
  const claude =
    /(you(?:'|’)ve hit your (?:[\w-]+ )?limit|you(?:'|’)re out of extra usage|(?:[\w-]+ )?limit reached)\s*[·∙•|–—-]\s*resets\s+(?:at\s+)?(.+)$/i.exec(
      line,
    );
  if (claude)
    return {
      provider: 'claude',
      resetAt: parseClockTime(claude[2]!, now),
      reason: clip(line.slice(claude.index)),
      source: 'output',
    };

  // Codex: "You've hit your usage limit. Upgrade to Pro (…) or try again at 5:42 PM." or
  // "… try again in 5 days 22 hours 11 minutes." (also inside `exec --json` error events).
  const codex =
    /you(?:'|’)ve hit your usage limit\b.*?try again (at|in) ([^."]+(?:\.\d+)?)/i.exec(
      line,
    );
  if (codex) {
    const when = codex[2]!.trim();
    const resetAt =
      codex[1]!.toLowerCase() === 'in'
        ? (() => {
            const d = parseSpokenDuration(when);
            return d === undefined ? undefined : now + d;
          })()
        : parseClockTime(when, now);
    return {
      provider: 'codex',
      resetAt,
      reason: clip(line.slice(codex.index)),
      source: 'output',
    };
  }
  if (
    /you(?:'|’)ve hit your usage limit/i.test(line) ||
    /usage_limit_reached/.test(line)
  ) {
    const at = /"resets_at"\s*:\s*(\d{9,13})/.exec(line)?.[1];
    const inS = /"resets_in_seconds"\s*:\s*(\d+)/.exec(line)?.[1];
    return {
      provider: 'codex',
      resetAt: at ? epoch(at) : inS ? now + Number(inS) * 1000 : undefined,
      reason: clip(line),
      source: 'output',
      exact: at !== undefined || inS !== undefined,
    };
  }

  // HTTP 429 as Aider (litellm) and other API clients print it: "litellm.RateLimitError: …",
  // "rate_limit_error", "429 Too Many Requests". A "retry-after: N" on the line is honoured.
  if (
    /RateLimitError|rate_limit_error|\b429\b.*(?:too many requests|rate.?limit)|too many requests/i.test(
      line,
    )
  ) {
    const after = /retry[-_ ]after["']?\s*[:=]\s*["']?(\d+)/i.exec(line)?.[1];
    return {
      provider: 'http-429',
      resetAt: after ? now + Number(after) * 1000 : undefined,
      reason: clip(line),
      source: 'output',
    };
  }
  return undefined;
}

function epoch(digits: string): number {
  const n = Number(digits);
  return digits.length >= 13 ? n : n * 1000;
}

/**
 * How much a finding says about the reset: a machine-readable time (stream-json, an epoch)
 * beats one read from a sentence, which beats none.
 */
function precision(l: UsageLimit): number {
  if (l.resetAt === undefined) return 0;
  return l.exact ? 2 : 1;
}

/**
 * Watches an agent's output for provider limits, line by line (stdout and stderr alike). The
 * most precise finding wins (stream-json's resetsAt over "resets 2pm"); among equals, the last.
 */
export class UsageLimitScanner {
  private partial = '';
  private last: UsageLimit | undefined;

  constructor(private readonly now: () => number = Date.now) {}

  feed(chunk: Buffer | string): void {
    const text = this.partial + chunk.toString();
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    if (this.partial.length > MAX_LINE)
      this.partial = this.partial.slice(-MAX_LINE);
    for (const l of lines) this.scan(l);
  }

  private scan(line: string): void {
    const found = limitInLine(line.slice(0, MAX_LINE), this.now());
    if (found && (!this.last || precision(found) >= precision(this.last)))
      this.last = found;
  }

  /** What was found, once the agent has exited (the unterminated last line included). */
  finish(): UsageLimit | undefined {
    if (this.partial) this.scan(this.partial);
    this.partial = '';
    return this.last;
  }
}

/**
 * The generic contract: `$AGENT_STATUS_FILE` holding `{"retryAfter": "<ISO time or seconds>",
 * "reason": "…"}`. Undefined when the file is missing or holds no usable retryAfter.
 */
export function readStatusFile(
  file: string,
  now = Date.now(),
): { resetAt: number; reason: string | undefined } | undefined {
  let raw: string;
  try {
    raw = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const o = parsed as { retryAfter?: unknown; reason?: unknown };
  const resetAt = parseRetryAfter(o.retryAfter, now);
  if (resetAt === undefined) return undefined;
  return {
    resetAt,
    reason: typeof o.reason === 'string' ? clip(o.reason) : undefined,
  };
}

/**
 * Decides whether a finished (non-zero) run ran into a limit: the status file first (the agent's
 * own word), then exit 75, then what its output said.
 */
export function usageLimitOf(
  exitCode: number | null,
  statusFile: string,
  scanner: UsageLimitScanner,
  now = Date.now(),
): UsageLimit | undefined {
  const seen = scanner.finish();
  if (exitCode === 0) return undefined;
  const status = readStatusFile(statusFile, now);
  if (status)
    return {
      provider: seen?.provider ?? 'agent',
      resetAt: status.resetAt,
      reason: status.reason ?? seen?.reason ?? 'the agent asked to retry later',
      source: 'status-file',
    };
  if (seen) return seen;
  if (exitCode === EX_TEMPFAIL)
    return {
      provider: 'agent',
      resetAt: undefined,
      reason: `the agent exited with ${EX_TEMPFAIL} (EX_TEMPFAIL: try again later)`,
      source: 'exit-75',
    };
  return undefined;
}
