import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path'
import { usageError } from '../errors.js'
import { workflowTemplate } from './init-workflow.js'

/** Where each file goes, relative to the repo root (`--config`, `--workflow`, `--skill`). */
export interface InitPaths {
  config: string
  workflow: string
  skill: string
}

export const DEFAULT_INIT_PATHS: InitPaths = {
  config: '.crabbox.yaml',
  workflow: join('.github', 'workflows', 'crabbox.yml'),
  skill: join('.agents', 'skills', 'crabbox', 'SKILL.md'),
}

export interface InitOptions {
  /** Where the files go: the git root of the current directory. */
  repoRoot: string
  force?: boolean
  /** Other places for the files, relative to the repo root; each must stay inside it. */
  paths?: Partial<InitPaths>
}

export interface InitResult {
  repoRoot: string
  /** Paths written, relative to the repo root. */
  written: string[]
}

function repoConfigTemplate(repo: string): string {
  const profile = `${
    basename(repo)
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+|-+$/g, '') || 'repo'
  }-check`
  return `# crabbox settings for this repository (see docs/config.md for every key).
# Values here override your user config; CRABBOX_* env and flags override these.
profile: ${profile}
class: beast
ttl: 90m
idleTimeout: 30m
sync:
  # Paths (gitignore syntax) never copied to the runner, in addition to .gitignore.
  exclude: []
env:
  # Local environment variables forwarded to remote commands (NAME or PREFIX*).
  allow: [CI, NODE_OPTIONS]
`
}

const skill = `---
name: crabbox
description: Run this repository's tests, builds and other heavy commands on a remote crabbox test box instead of the local machine.
---

# crabbox

crabbox leases a remote machine, syncs this checkout to it (including
uncommitted changes), runs a command there and streams the output back.
Use it for slow or resource-hungry commands: full test suites, builds,
anything that needs Linux when you are not on Linux.

## Run a command

\`\`\`sh
crabbox run -- npm test
crabbox run -- npm test -- path/to/one.test.ts
\`\`\`

- Everything after \`--\` runs on the remote box in the synced checkout.
- The exit code is the remote command's exit code; its stdout and stderr are
  streamed to yours. crabbox's own progress goes to stderr.
- Exit codes from crabbox itself: 2 usage/config, 3 auth (run \`crabbox login\`),
  4 not found, 5 provisioning/timeout, 6 sync, 7 SSH, 255 connection lost.
  A lost connection is never retried automatically: the command may have run.

## Read the result from a script

\`\`\`sh
crabbox run --json -- npm test > result.json
jq .exitCode result.json
\`\`\`

With \`--json\`, stdout holds exactly one JSON object whatever happened, and the
command's own stdout goes to stderr (with its stderr and crabbox's progress).
The object has \`exitCode\` and \`"failure"\`: \`null\` on success, \`"remote"\` when
the command itself exited non-zero (even with 2 to 7, which crabbox also uses),
\`"crabbox"\` when crabbox failed (then \`error\` has \`code\`, \`message\`, \`hint\`).

## Keep a box warm for several commands

\`\`\`sh
crabbox warmup                 # prints the lease ID and slug
crabbox run --id <id> -- npm test
crabbox run --id <id> -- npm run lint
crabbox stop <id>              # release it when done
\`\`\`

A warm box is claimed by the checkout (worktree) that leased or used it: from another
checkout \`run --id\` and \`ssh --id\` stop with exit 2 naming the owning checkout.
Warm a box of your own, or pass \`--reclaim\` to take that one over.

## Inspect

\`\`\`sh
crabbox status --id <id> --json
crabbox list --json            # your active leases
crabbox doctor                 # what is misconfigured, and how to fix it
crabbox config show            # effective settings and where they came from
\`\`\`

Prefer \`--json\` when you need to read results programmatically. Do not
print or store broker tokens; \`crabbox config show\` never shows them.
`

/** `a`, `a and b`, `a, b and c`. */
const listed = (items: string[]) => (items.length < 2 ? items.join('') : `${items.slice(0, -1).join(', ')} and ${items.at(-1)}`)

/** The files `init` writes, as [path relative to the repo root, contents]; a path leaving the repo is exit 2. */
function initFiles(options: InitOptions): Array<[string, string]> {
  const paths = { ...DEFAULT_INIT_PATHS, ...options.paths }
  const flagged = Object.entries(paths).map(([name, path]): [string, string] => {
    const inside = relative(options.repoRoot, resolve(options.repoRoot, path))
    if (!path.trim() || !inside || inside.startsWith('..') || isAbsolute(inside))
      throw usageError(
        `--${name} ${JSON.stringify(path)} is not a file inside ${options.repoRoot}`,
        `give a path relative to the repository root`,
      )
    return [name, inside]
  })
  const seen = new Map<string, string>()
  for (const [name, path] of flagged) {
    const other = seen.get(path)
    if (other) throw usageError(`--${other} and --${name} both name ${path}`, 'give each file its own path')
    seen.set(path, name)
  }
  const at = Object.fromEntries(flagged) as unknown as InitPaths
  return [
    [at.config, repoConfigTemplate(options.repoRoot)],
    [at.skill, skill],
    [at.workflow, workflowTemplate(options.repoRoot)],
  ]
}

/**
 * Writes the repo config, the GitHub Actions workflow and the agent skill; refuses
 * (exit 2, nothing written) when any of them exists, unless `force`.
 */
export async function initRepo(options: InitOptions): Promise<InitResult> {
  const files = initFiles(options)
  const existing = files.map(([path]) => path).filter((path) => existsSync(join(options.repoRoot, path)))
  if (existing.length > 0 && !options.force) {
    throw usageError(
      `${listed(existing)} already exist${existing.length === 1 ? 's' : ''} in ${options.repoRoot}; nothing was written`,
      'Rerun with --force to overwrite, or edit the existing files.',
    )
  }
  for (const [path, contents] of files) {
    const target = join(options.repoRoot, path)
    await mkdir(dirname(target), { recursive: true })
    await writeFile(target, contents)
  }
  return { repoRoot: options.repoRoot, written: files.map(([path]) => path) }
}
