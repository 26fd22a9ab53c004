import { defineConfig } from 'vitest/config';

// `npm run test:chaos`: the full chaos suite, one file at a time (it runs ten agents itself).
export default defineConfig({
  test: {
    include: ['test/chaos/full.test.ts'],
    testTimeout: 1_000_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 1,
  },
});
