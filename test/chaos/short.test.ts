import { describe, expect, it } from 'vitest';
import { checkGuarantees, formatSummary, runChaos } from './harness.js';

// The short profile of the chaos suite, part of `npm test`. The full one: `npm run test:chaos`.
describe('chaos (short profile)', () => {
  it('loses nothing and never runs an issue twice at once under runner, supervisor and Redis faults', async () => {
    const seed = Number(process.env.CHAOS_SEED ?? Date.now() % 100000);
    const summary = await runChaos({
      agents: 4,
      issues: 40,
      durationMs: [300, 2500],
      failingShare: 0.1,
      hangingShare: 0.05,
      faults: [
        'kill-runner',
        'freeze-runner',
        'kill-supervisor',
        'restart-redis',
      ],
      faultGapMs: [1500, 3000],
      redisPersistence: 'aof',
      seed,
      timeoutMs: 240_000,
      log: (l) => console.log(l),
    });
    console.log(`\nchaos summary (seed ${seed})\n${formatSummary(summary)}`);
    expect(summary.faults.length).toBeGreaterThanOrEqual(4);
    checkGuarantees(summary, expect);
  }, 300_000);
});
