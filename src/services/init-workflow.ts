import { existsSync } from 'node:fs'
import { join } from 'node:path'

/** The test command a new workflow runs, guessed from the files at the repo root (edit it after). */
export function guessTestCommand(repoRoot: string): string {
  const has = (name: string) => existsSync(join(repoRoot, name))
  if (has('package.json')) return 'npm test'
  if (has('go.mod')) return 'go test ./...'
  if (has('Cargo.toml')) return 'cargo test'
  if (has('pyproject.toml') || has('setup.py')) return 'python3 -m pytest'
  if (has('Makefile')) return 'make test'
  return 'npm test'
}

/**
 * `.github/workflows/crabbox.yml`: a GitHub Actions job that installs crabbox and runs the
 * tests on a crabbox runner through the broker. The command travels in an environment
 * variable, never pasted into the script, so a dispatch input cannot inject shell.
 */
export function workflowTemplate(repoRoot: string): string {
  const command = guessTestCommand(repoRoot)
  return `# Runs this repository's tests on a crabbox runner (written by \`crabbox init\`).
#
# Set two repository secrets first (Settings → Secrets and variables → Actions):
#   CRABBOX_COORDINATOR        the broker URL, e.g. https://crabbox.example.com
#   CRABBOX_COORDINATOR_TOKEN  a broker token for CI
# The job's own machine only drives crabbox: the command runs on the leased runner,
# which is released when it ends. Change the command below, or give another one when
# starting the workflow by hand (Run workflow → command).
name: crabbox

on:
  pull_request:
  push:
    branches: [main]
  workflow_dispatch:
    inputs:
      command:
        description: Command to run on the crabbox runner
        required: false
        default: ${command}

permissions:
  contents: read

concurrency:
  group: crabbox-\${{ github.workflow }}-\${{ github.ref }}
  cancel-in-progress: true

jobs:
  test:
    name: crabbox run
    runs-on: ubuntu-latest
    timeout-minutes: 60
    env:
      CRABBOX_COORDINATOR: \${{ secrets.CRABBOX_COORDINATOR }}
      CRABBOX_COORDINATOR_TOKEN: \${{ secrets.CRABBOX_COORDINATOR_TOKEN }}
      CRABBOX_OWNER: \${{ github.actor }}@users.noreply.github.com
      CRABBOX_COMMAND: \${{ inputs.command || '${command}' }}
    steps:
      - name: Check out
        uses: actions/checkout@v4
      - name: Set up Node.js
        uses: actions/setup-node@v4
        with:
          node-version: 22
      - name: Install crabbox
        run: npm install --global crabbox
      - name: Check crabbox
        run: crabbox doctor
      - name: Run the tests on crabbox
        run: crabbox run --shell -- "$CRABBOX_COMMAND"
`
}
