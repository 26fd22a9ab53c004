import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/chaos/full.test.ts', 'node_modules/**'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Tests spawn supervisors, runners and agents: two files at a time suit 2-core machines.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
