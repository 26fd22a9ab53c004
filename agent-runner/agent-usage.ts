import type { AgentUsage } from '../contract/job.js';
import {
  costOf,
  priceFor,
  type PriceTable,
  type TokenCounts,
} from '../contract/prices.js';

const int = (v: unknown): number =>
  typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.round(v) : 0;

const NONE: TokenCounts = {
  inputTokens: 0,
  outputTokens: 0,
  cacheReadTokens: 0,
  cacheWriteTokens: 0,
};

const add = (a: TokenCounts, b: TokenCounts): TokenCounts => ({
  inputTokens: a.inputTokens + b.inputTokens,
  outputTokens: a.outputTokens + b.outputTokens,
  cacheReadTokens: a.cacheReadTokens + b.cacheReadTokens,
  cacheWriteTokens: a.cacheWriteTokens + b.cacheWriteTokens,
});

/** Claude's usage object (input_tokens counts neither cache reads nor cache writes). */
const claudeTokens = (u: Record<string, unknown>): TokenCounts => ({
  inputTokens: int(u.input_tokens),
  outputTokens: int(u.output_tokens),
  cacheReadTokens: int(u.cache_read_input_tokens),
  cacheWriteTokens: int(u.cache_creation_input_tokens),
});

/** Codex's usage object: its input_tokens include the cached ones, which are taken out here. */
function codexTokens(u: Record<string, unknown>): TokenCounts {
  const cached = int(u.cached_input_tokens);
  return {
    inputTokens: Math.max(0, int(u.input_tokens) - cached),
    outputTokens: int(u.output_tokens),
    cacheReadTokens: cached,
    cacheWriteTokens: 0,
  };
}

/**
 * Reads the machine-readable output of the agents, line by line: Claude Code's
 * `--output-format stream-json` and Codex's `exec --json` (docs/agents.md, "Tokens and cost").
 *
 * - Claude: each `assistant` message's `usage` (by message id: a message split over several
 *   events repeats it) as the run goes; the `result` event's `total_cost_usd` and `usage` for
 *   everything before it; the model from `system`/`init` or a message.
 * - Codex: every `turn.completed` (and `turn.failed`) event's `usage`, summed; one turn each.
 *
 * `spend()` is the running cost (budgets): the last reported total plus, at the price table,
 * what came after it. Anything that is not one of these events passes unread.
 */
export class AgentUsageScanner {
  private partial = '';
  private model: string | undefined;
  /** Totals up to the last `result` event (Claude) as it reported them. */
  private reported: { tokens: TokenCounts; costUsd?: number } | undefined;
  /** Claude messages since the last `result` event, by message id. */
  private pending = new Map<string, TokenCounts>();
  private anonymous = 0;
  /** Codex turns, summed. */
  private turnTokens: TokenCounts | undefined;
  private turns = 0;
  private claudeTurns: number | undefined;
  /** The last event was Claude's `result`: its session is over (a -p run exits next). */
  private ended = false;

  constructor(private readonly prices: PriceTable = {}) {}

  feed(chunk: Buffer | string): void {
    const lines = (this.partial + chunk.toString()).split('\n');
    this.partial = (lines.pop() ?? '').slice(-1024 * 1024);
    for (const l of lines) this.line(l);
  }

  private line(raw: string): void {
    const l = raw.trim();
    if (!l.startsWith('{') || !l.includes('"type"')) return;
    let ev: Record<string, unknown>;
    try {
      ev = JSON.parse(l) as Record<string, unknown>;
    } catch {
      return;
    }
    const type = ev.type;
    if (type === 'assistant' || type === 'result')
      this.ended = type === 'result';
    if (type === 'system' && typeof ev.model === 'string')
      this.model = ev.model;
    else if (type === 'assistant') {
      const m = (ev.message ?? {}) as Record<string, unknown>;
      if (typeof m.model === 'string') this.model = m.model;
      if (m.usage && typeof m.usage === 'object') {
        const id =
          typeof m.id === 'string' ? m.id : `#${(this.anonymous += 1)}`;
        this.pending.set(id, claudeTokens(m.usage as Record<string, unknown>));
      }
    } else if (type === 'result') {
      const u = (ev.usage ?? {}) as Record<string, unknown>;
      this.reported = {
        tokens: ev.usage
          ? claudeTokens(u)
          : add(this.reported?.tokens ?? NONE, this.pendingTokens()),
        ...(typeof ev.total_cost_usd === 'number' && ev.total_cost_usd >= 0
          ? { costUsd: ev.total_cost_usd }
          : {}),
      };
      if (typeof ev.model === 'string') this.model = ev.model;
      if (typeof ev.num_turns === 'number')
        this.claudeTurns = int(ev.num_turns);
      this.pending.clear();
    } else if (type === 'turn.completed' || type === 'turn.failed') {
      if (!ev.usage || typeof ev.usage !== 'object') return;
      this.turnTokens = add(
        this.turnTokens ?? NONE,
        codexTokens(ev.usage as Record<string, unknown>),
      );
      this.turns += 1;
    }
  }

  private pendingTokens(): TokenCounts {
    let t = NONE;
    for (const v of this.pending.values()) t = add(t, v);
    return t;
  }

  private priced(t: TokenCounts): number | undefined {
    const p = priceFor(this.prices, this.model);
    return p ? costOf(t, p) : undefined;
  }

  /** Tokens so far, and what they cost (reported, else at the price table). */
  private totals():
    | { tokens: TokenCounts; costUsd?: number; source?: 'reported' | 'prices' }
    | undefined {
    if (this.turnTokens) {
      const cost = this.priced(this.turnTokens);
      return {
        tokens: this.turnTokens,
        ...(cost !== undefined ? { costUsd: cost, source: 'prices' } : {}),
      };
    }
    if (!this.reported && this.pending.size === 0) return undefined;
    const after = this.pendingTokens();
    const tokens = add(this.reported?.tokens ?? NONE, after);
    if (this.reported?.costUsd !== undefined)
      return {
        tokens,
        costUsd: this.reported.costUsd + (this.priced(after) ?? 0),
        source: 'reported',
      };
    const cost = this.priced(tokens);
    return {
      tokens,
      ...(cost !== undefined ? { costUsd: cost, source: 'prices' } : {}),
    };
  }

  /** Claude reported the end of its session: stopping it now would only throw its work away. */
  get sessionEnded(): boolean {
    return this.ended;
  }

  /** The attempt's spend so far in USD (undefined while neither reported nor priceable). */
  spend(): number | undefined {
    return this.totals()?.costUsd;
  }

  /** The run's usage once the agent exited (undefined when it printed none). */
  finish(): AgentUsage | undefined {
    if (this.partial) this.line(this.partial);
    this.partial = '';
    const t = this.totals();
    if (!t) return undefined;
    const turns = this.turnTokens ? this.turns : this.claudeTurns;
    return {
      ...t.tokens,
      ...(t.costUsd !== undefined
        ? { costUsd: t.costUsd, costSource: t.source! }
        : {}),
      ...(turns !== undefined ? { turns } : {}),
      ...(this.model ? { model: this.model.slice(0, 200) } : {}),
    };
  }
}
