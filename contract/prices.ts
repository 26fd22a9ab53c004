/**
 * The price table: what a model's tokens cost, per million, for agents that report tokens but
 * no cost (Codex) and for the running spend of an attempt before its agent reports a total
 * (budgets). Shared by the supervisor (configuration, recorder) and the runner (budgets).
 */
import { z } from 'zod';

/** USD per million tokens of each kind. */
export const PriceSchema = z
  .object({
    input: z.number().nonnegative(),
    output: z.number().nonnegative(),
    /** @defaultValue 0 */
    cacheRead: z.number().nonnegative().default(0),
    /** @defaultValue 0 */
    cacheWrite: z.number().nonnegative().default(0),
  })
  .strict();
export type Price = z.output<typeof PriceSchema>;

/**
 * Model name (or a prefix of it, e.g. `claude-sonnet-4-5` for `claude-sonnet-4-5-20250929`)
 * → price; the key `*` prices runs whose model is not listed or not reported (Codex reports none).
 */
export const PriceTableSchema = z.record(
  z.string().min(1).max(200),
  PriceSchema,
);
export type PriceTable = z.output<typeof PriceTableSchema>;

/** The price of a model: its own entry, else the longest key it starts with, else `*`. */
export function priceFor(
  table: PriceTable,
  model: string | undefined,
): Price | undefined {
  if (model !== undefined) {
    if (Object.hasOwn(table, model)) return table[model];
    let best: string | undefined;
    for (const k of Object.keys(table))
      if (k !== '*' && model.startsWith(k) && k.length > (best?.length ?? 0))
        best = k;
    if (best !== undefined) return table[best];
  }
  return Object.hasOwn(table, '*') ? table['*'] : undefined;
}

export interface TokenCounts {
  /** Input tokens not read from or written to the cache. */
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
}

/** USD for these tokens at this price. */
export function costOf(t: TokenCounts, p: Price): number {
  return (
    (t.inputTokens * p.input +
      t.outputTokens * p.output +
      t.cacheReadTokens * p.cacheRead +
      t.cacheWriteTokens * p.cacheWrite) /
    1_000_000
  );
}
