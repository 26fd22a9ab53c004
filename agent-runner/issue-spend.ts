import type { Redis } from 'ioredis';

const KEEP_MS = 30 * 86_400_000;

/**
 * What a job's finished attempts spent, in Redis where every runner (any host) sees it, so
 * `budget.perIssue` counts every attempt of the issue, not only the running one.
 */
export class IssueSpend {
  constructor(
    private readonly redis: Redis,
    private readonly key: string,
  ) {}

  /** USD spent by the job's earlier attempts. */
  async before(): Promise<number> {
    const v = Number(await this.redis.get(this.key));
    return Number.isFinite(v) && v > 0 ? v : 0;
  }

  async add(usd: number): Promise<void> {
    if (!(usd > 0)) return;
    await this.redis
      .multi()
      .incrbyfloat(this.key, usd.toFixed(6))
      .pexpire(this.key, KEEP_MS)
      .exec();
  }
}

/** The failure message of an attempt stopped for the issue's budget. */
export function overBudget(spentUsd: number, budgetUsd: number): string {
  return `budget: the issue spent $${spentUsd.toFixed(4)}, more than budget.perIssue ($${budgetUsd.toFixed(2)}); the agent was stopped`;
}
