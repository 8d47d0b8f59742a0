#!/usr/bin/env node
// `npm run bench -- <name> [args]` runs bench/<name>/index.ts (through tsx, so benchmarks can
// share test/support's TypeScript harness); with no name, lists them.
import { spawnSync } from 'node:child_process'
import { readdirSync, existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'

const here = dirname(fileURLToPath(import.meta.url))
const available = readdirSync(here, { withFileTypes: true })
  .filter((entry) => entry.isDirectory() && existsSync(join(here, entry.name, 'index.ts')))
  .map((entry) => entry.name)

const [name, ...rest] = process.argv.slice(2)
if (!name || !available.includes(name)) {
  process.stderr.write(`usage: npm run bench -- <${available.join('|') || 'name'}> [options]\n`)
  process.exit(name ? 2 : 0)
}
const tsx = join(here, '..', 'node_modules', 'tsx', 'dist', 'cli.mjs')
const result = spawnSync(process.execPath, [tsx, join(here, name, 'index.ts'), ...rest], { stdio: 'inherit' })
process.exit(result.status ?? 1)
