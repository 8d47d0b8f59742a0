#!/usr/bin/env node
// `npm run bench -- <name> [args]` runs bench/<name>/index.js; with no name, lists them.
import { readdirSync, existsSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { dirname, join } from 'node:path'

const here = dirname(fileURLToPath(import.meta.url))
const available = readdirSync(here, { withFileTypes: true })
  .filter((entry) => entry.isDirectory() && existsSync(join(here, entry.name, 'index.js')))
  .map((entry) => entry.name)

const [name, ...rest] = process.argv.slice(2)
if (!name || !available.includes(name)) {
  process.stderr.write(`usage: npm run bench -- <${available.join('|') || 'name'}> [options]\n`)
  process.exit(name ? 2 : 0)
}
process.argv = [process.argv[0], join(here, name, 'index.js'), ...rest]
await import(pathToFileURL(join(here, name, 'index.js')).href)
