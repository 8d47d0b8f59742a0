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
      // Real sshd hosts, workerd and subprocesses: on two cores, so keep them modest, and run
      // these projects one after the other (after unit and worker) when several are selected.
      ...(['integration', 'harness', 'e2e'] as const).map((name, i) => ({
        test: {
          name,
          // integration: src modules in-process against real sshd hosts; harness: the test
          // support's own tests (sshHost, tcpProxy, startBroker); e2e: the built CLI as a subprocess.
          include: [`test/${name}/**/*.test.ts`],
          // One private copy of the built package per run: others rebuild dist/ meanwhile.
          globalSetup: ['./test/support/e2e-package.ts'],
          environment: 'node' as const,
          testTimeout: 120_000,
          hookTimeout: 120_000,
          maxWorkers: 2,
          sequence: { groupOrder: i + 1 },
        },
      })),
    ],
  },
})
