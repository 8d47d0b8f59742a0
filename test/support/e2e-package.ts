import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { repoRoot } from './cli.js'
import { copyPackage } from './package-copy.js'

/**
 * vitest globalSetup of the e2e project: one private copy of the built package for the whole
 * run (see copyPackage), handed to the test processes through CRABBOX_E2E_PACKAGE, which
 * `cliPath` and `startBroker` use.
 */
export default function setup(): () => void {
  const scratch = mkdtempSync(join(tmpdir(), 'crabbox-e2e-package-'))
  process.env.CRABBOX_E2E_PACKAGE = copyPackage(repoRoot, join(scratch, 'crabbox'))
  return () => rmSync(scratch, { recursive: true, force: true })
}
