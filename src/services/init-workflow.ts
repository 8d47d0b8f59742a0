import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { jobSideScript } from './actions/scripts.js'

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
      # Set by \`crabbox actions hydrate\` (and \`warmup --actions-runner\`): run the hydrate job below
      # on the lease's own runner, so the lease gets this job's setup, environment and services.
      crabbox_id:
        description: crabbox lease to hydrate (set by crabbox)
        required: false
        default: ''
      crabbox_runner_label:
        description: Runner label of that lease (set by crabbox)
        required: false
        default: ''
      crabbox_keep_alive_minutes:
        description: How long the hydrated job stays alive (set by crabbox)
        required: false
        default: '90'
      crabbox_job:
        description: Job name recorded on the lease (set by crabbox)
        required: false
        default: ''

permissions:
  contents: read

concurrency:
  group: crabbox-\${{ github.workflow }}-\${{ github.ref }}
  cancel-in-progress: true

jobs:
  test:
    name: crabbox run
    if: \${{ !inputs.crabbox_id }}
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

  # The job side of Actions hydration: it runs on the lease, does this repository's CI setup,
  # then hands its workspace, environment and services to crabbox and stays alive until
  # \`crabbox stop\` (or the keep-alive time). Copy your CI job's setup steps and services here.
  hydrate:
    name: crabbox hydrate
    if: \${{ inputs.crabbox_id }}
    runs-on: [self-hosted, '\${{ inputs.crabbox_runner_label }}']
    timeout-minutes: 360
    env:
      CRABBOX_ID: \${{ inputs.crabbox_id }}
      CRABBOX_KEEP_ALIVE_MINUTES: \${{ inputs.crabbox_keep_alive_minutes }}
      CRABBOX_JOB: \${{ inputs.crabbox_job }}
    steps:
      - name: Check out
        uses: actions/checkout@v4
        with:
          # The workspace stays on the lease: no job token in its .git/config.
          persist-credentials: false
      - name: Set up Node.js
        uses: actions/setup-node@v4
        with:
          node-version: 22
      - name: Hand the job to crabbox
        shell: bash
        env:
          CRABBOX_SERVICES: \${{ toJSON(job.services) }}
        run: |
${indent(jobSideScript, '          ')}
`
}

const indent = (text: string, by: string) =>
  text
    .split('\n')
    .map((line) => (line ? by + line : ''))
    .join('\n')
