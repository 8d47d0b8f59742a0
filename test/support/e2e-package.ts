import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { repoRoot } from './cli.js'
import { copyPackage } from './package-copy.js'

/**
 * vitest globalSetup of the projects that run the built package (integration, harness, e2e):
 * one private copy of it for the whole run (see copyPackage), handed to the test processes
 * through CRABBOX_E2E_PACKAGE, which `cliPath` and `startBroker` use. Projects of the same run
 * share the copy the first of them made.
 */
export default function setup(): () => void {
  if (process.env.CRABBOX_E2E_PACKAGE) return () => {}
  const scratch = mkdtempSync(join(tmpdir(), 'crabbox-e2e-package-'))
  process.env.CRABBOX_E2E_PACKAGE = copyPackage(repoRoot, join(scratch, 'crabbox'))
  return () => {
    rmSync(scratch, { recursive: true, force: true })
    delete process.env.CRABBOX_E2E_PACKAGE
  }
}
