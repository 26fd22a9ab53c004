import { defineConfig } from 'vitest/config';

// `npm run test:unit`: logic that needs no service (no Redis, Postgres, Docker or build), in
// seconds. `npm test` runs these files too, with everything else.
export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts'],
    testTimeout: 10_000,
    pool: 'threads',
  },
});
