import { describe, expect, it } from 'vitest';
import { runChaos } from './harness.js';
import { checkGuarantees, formatSummary } from './summary.js';

// The short profile of the chaos suite, part of `npm test`. The full one: `npm run test:chaos`.
describe('chaos (short profile)', () => {
  it('loses nothing and never runs an issue twice at once under runner, supervisor and Redis faults (Redis restarts keeping and losing its data)', async () => {
    const seed = Number(process.env.CHAOS_SEED ?? Date.now() % 100000);
    const summary = await runChaos({
      agents: 4,
      issues: 50,
      durationMs: [300, 2500],
      failingShare: 0.1,
      hangingShare: 0.05,
      faults: [
        'kill-runner',
        'freeze-runner',
        'lose-redis',
        'kill-supervisor',
        'restart-redis',
      ],
      faultGapMs: [1000, 2000],
      redisPersistence: 'aof',
      seed,
      timeoutMs: 240_000,
      log: (l) => console.log(l),
    });
    console.log(`\nchaos summary (seed ${seed})\n${formatSummary(summary)}`);
    checkGuarantees(summary, expect);
  }, 300_000);
});
