/** How tokens and cost read in logs, the CLI and the page (the runner and the supervisor). */

/** 1234 → "1.2k", 2_500_000 → "2.5M". */
export function compactCount(n: number): string {
  if (n < 1000) return String(n);
  if (n < 1_000_000) return `${(n / 1000).toFixed(1)}k`;
  return `${(n / 1_000_000).toFixed(1)}M`;
}

export interface UsageAmounts {
  costUsd: number;
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
}

export const totalTokens = (u: UsageAmounts): number =>
  u.inputTokens + u.outputTokens + u.cacheReadTokens + u.cacheWriteTokens;

/** "$0.0421 · 6.0k tok"; the tokens alone when nothing was priced. */
export function describeUsage(u: UsageAmounts): string {
  const tok = `${compactCount(totalTokens(u))} tok`;
  return u.costUsd > 0 ? `$${u.costUsd.toFixed(4)} · ${tok}` : tok;
}

/** The sum of several totals. */
export function sumUsage<T extends UsageAmounts & { runs: number }>(
  all: readonly T[],
): UsageAmounts & { runs: number } {
  const s = {
    costUsd: 0,
    inputTokens: 0,
    outputTokens: 0,
    cacheReadTokens: 0,
    cacheWriteTokens: 0,
    runs: 0,
  };
  for (const u of all) {
    s.costUsd += u.costUsd;
    s.inputTokens += u.inputTokens;
    s.outputTokens += u.outputTokens;
    s.cacheReadTokens += u.cacheReadTokens;
    s.cacheWriteTokens += u.cacheWriteTokens;
    s.runs += u.runs;
  }
  return s;
}
