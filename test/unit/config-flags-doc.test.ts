import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { pathToFileURL } from 'node:url'
import { beforeAll, describe, expect, it } from 'vitest'
import { flagPaths } from '../../src/config/load.js'
import { repoRoot } from '../support/cli.js'

/**
 * docs/config.md's "Flags that override config" table against the commands themselves
 * (their oclif flag metadata, read from the command classes) and the loader's flag → key map:
 * every flag the table names exists on some command and sets the key the table says, and
 * every command flag that overrides a config key is in the table.
 */

const commandsDir = join(repoRoot, 'src', 'commands')
const files = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? files(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  )

/** Every command's flags: `flag name → command IDs that define it`. */
const commandFlags = new Map<string, string[]>()

beforeAll(async () => {
  for (const file of files(commandsDir)) {
    const command = (await import(pathToFileURL(file).href)).default as { flags?: Record<string, unknown> } | undefined
    const id = relative(commandsDir, file).replace(/\.ts$/, '').replaceAll('/', ':')
    for (const flag of Object.keys(command?.flags ?? {})) commandFlags.set(flag, [...(commandFlags.get(flag) ?? []), id])
  }
}, 60_000)

/** The table's rows: the flags of the first column, the keys of the second (`--a`, `--b` | `a`, `b` pair up). */
function tableRows(): Array<{ flags: string[]; keys: string[] }> {
  const text = readFileSync(join(repoRoot, 'docs', 'config.md'), 'utf8')
  const start = text.indexOf('## Flags that override config')
  const section = text.slice(start, text.indexOf('\n## ', start + 5))
  return [...section.matchAll(/^\|(.+?)\|(.+?)\|/gm)]
    .map((row) => ({
      flags: [...row[1].matchAll(/`--([a-z][a-z-]*)`/g)].map((match) => match[1]),
      keys: [...row[2].matchAll(/`([A-Za-z][\w.]*)`/g)].map((match) => match[1]),
    }))
    .filter((row) => row.flags.length > 0)
}

const camel = (name: string) => name.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase())

describe('docs/config.md flag table', () => {
  it('names flags the commands define, each setting the key the table says', () => {
    const rows = tableRows()
    expect(rows.length).toBeGreaterThan(5)
    const missing: string[] = []
    const wrongKey: string[] = []
    for (const { flags, keys } of rows) {
      flags.forEach((flag, index) => {
        const key = keys.length === flags.length ? keys[index] : keys[0]
        if (!commandFlags.has(flag)) missing.push(`--${flag}`)
        if (flagPaths[camel(flag)] !== key)
          wrongKey.push(`--${flag}: table says ${key}, the loader sets ${flagPaths[camel(flag)] ?? 'nothing'}`)
      })
    }
    expect(missing, 'flags in docs/config.md that no command defines').toEqual([])
    expect(wrongKey).toEqual([])
  })

  it('lists every command flag that overrides a config key', () => {
    const documented = new Set(tableRows().flatMap((row) => row.flags))
    const undocumented = [...commandFlags.keys()].filter((flag) => flagPaths[camel(flag)] !== undefined && !documented.has(flag))
    expect(undocumented, 'config-overriding flags missing from docs/config.md').toEqual([])
  })
})
