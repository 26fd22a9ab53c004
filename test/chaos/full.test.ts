import { describe, expect, it } from 'vitest';
import { runChaos, type ChaosOptions } from './harness.js';
import { checkGuarantees, formatSummary } from './summary.js';

// The full chaos suite (`npm run test:chaos`): 10 agents, 200 issues, every fault kind, with
// Redis persisting to AOF and, separately, with no persistence (every Redis restart loses its
// data; the supervisor re-feeds).

const base: Omit<ChaosOptions, 'redisPersistence' | 'seed'> = {
  agents: 10,
  issues: 200,
  durationMs: [200, 4000],
  failingShare: 0.08,
  hangingShare: 0.03,
  faults: [
    'kill-runner',
    'freeze-runner',
    'lose-redis',
    'kill-supervisor',
    'restart-redis',
  ],
  faultGapMs: [2000, 4000],
  timeoutMs: 900_000,
  log: (l) => console.log(l),
};

describe('chaos (full)', () => {
  for (const redisPersistence of ['aof', 'none'] as const) {
    it(`200 issues, 10 agents, faults of every kind, Redis ${redisPersistence === 'aof' ? 'with AOF' : 'without persistence'}`, async () => {
      const seed = Number(process.env.CHAOS_SEED ?? Date.now() % 100000);
      const summary = await runChaos({ ...base, redisPersistence, seed });
      console.log(
        `\nchaos summary (Redis ${redisPersistence}, seed ${seed})\n${formatSummary(summary)}`,
      );
      checkGuarantees(summary, expect);
    }, 1_000_000);
  }
});
