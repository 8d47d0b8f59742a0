import { defineConfig } from 'vitest/config'
import { cloudflareTest } from '@cloudflare/vitest-pool-workers'
import { accessCertsOutbound, workerTestBindings } from './test/worker/fixtures/bindings.js'

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
          testTimeout: 30_000,
        },
      },
      {
        plugins: [
          cloudflareTest({
            wrangler: { configPath: './wrangler.toml' },
            main: './worker/index.ts',
            miniflare: { bindings: workerTestBindings, outboundService: accessCertsOutbound },
          }),
        ],
        test: {
          name: 'worker',
          include: ['test/worker/**/*.test.ts'],
          // Concurrency tests (200 parallel creates) need room on a loaded 2-core machine.
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          // One private copy of the built package per run: others rebuild dist/ meanwhile.
          globalSetup: ['./test/support/e2e-package.ts'],
          environment: 'node',
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // Real sshd hosts, workerd and CLI subprocesses: two cores, so keep it modest.
          maxWorkers: 2,
        },
      },
    ],
  },
})
