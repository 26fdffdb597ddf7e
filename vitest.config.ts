import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // CLI and database tests start processes and databases: generous limits, no sleeps.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
