import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ExitCode } from '../../src/errors.js'
import { repoRoot } from '../support/cli.js'

/**
 * The docs say what the CLI does: every flag a page shows (in its flag tables and in the
 * `crabbox …` command lines of its examples) exists on that command, and the exit-code list
 * is the one in src/errors.ts. Flags are read from the built oclif manifest.
 */

interface ManifestCommand {
  flags: Record<string, { char?: string; allowNo?: boolean }>
}
const manifestDir = process.env.CRABBOX_E2E_PACKAGE ?? repoRoot
const manifest = JSON.parse(readFileSync(join(manifestDir, 'oclif.manifest.json'), 'utf8')) as { commands: Record<string, ManifestCommand> }
const ids = Object.keys(manifest.commands)
/** Flags every command takes without declaring them. */
const everywhere = new Set(['help', 'h'])

const docsDir = join(repoRoot, 'docs')
const pages = [
  ...readdirSync(join(docsDir, 'commands')).map((file) => join('commands', file)),
  ...readdirSync(docsDir).filter((file) => file.endsWith('.md') && file !== 'cli.md'),
  ...readdirSync(join(docsDir, 'providers')).map((file) => join('providers', file)),
].filter((file) => file.endsWith('.md'))

const flagsOf = (id: string) => {
  const flags = manifest.commands[id].flags
  // A boolean flag with `allowNo` also takes its `--no-` form.
  const negated = Object.entries(flags).flatMap(([name, flag]) => (flag.allowNo ? [`no-${name}`] : []))
  return new Set([...Object.keys(flags), ...negated, ...Object.values(flags).flatMap((flag) => (flag.char ? [flag.char] : []))])
}

/** `crabbox config set-broker --url X` → the longest command ID its words name. */
function commandOf(words: string[]): string | undefined {
  for (let take = Math.min(words.length, 3); take > 0; take--) {
    const id = words.slice(0, take).join(':')
    if (ids.includes(id)) return id
  }
  return undefined
}

/** Every `crabbox …` invocation in a page's code blocks: the command ID and the flags before `--` or a comment. */
function invocations(text: string): Array<{ line: string; id?: string; flags: string[] }> {
  const found: Array<{ line: string; id?: string; flags: string[] }> = []
  const blocks = [...text.matchAll(/```(?:sh|bash|console|text)?\n([\s\S]*?)```/g)].map((match) => match[1])
  for (const block of blocks) {
    // A comment after a command may show another command line (`# then: crabbox …`): each part counts.
    for (const raw of block.split('\n')) {
      for (const match of raw.split(/\s#\s/).flatMap((line) => [...line.matchAll(/(?:^|[|;&(:]\s*|\$\s|\s)crabbox\s+([^|;&)]*)/g)])) {
        const words = match[1].trim().split(/\s+/)
        const dashDash = words.indexOf('--')
        const own = dashDash >= 0 ? words.slice(0, dashDash) : words
        const firstFlag = own.findIndex((word) => word.startsWith('-'))
        const id = commandOf((firstFlag >= 0 ? own.slice(0, firstFlag) : own).filter((word) => /^[a-z][a-z-]*$/.test(word)))
        const flags = own.filter((word) => /^--?[a-z]/.test(word)).map((word) => word.replace(/^-+/, '').replace(/=.*$/, ''))
        found.push({ line: raw.trim(), id, flags })
      }
    }
  }
  return found
}

/** Flags named in the first column of a page's Markdown tables (rows like "| `--after N` | …"). */
function tableFlags(text: string): string[] {
  return [...text.matchAll(/^\|\s*(.+?)\s*\|/gm)].flatMap((row) => [...row[1].matchAll(/`--([a-z][a-z-]*)/g)].map((match) => match[1]))
}

/** The command a `docs/commands/<page>.md` documents: `broker-dev` → `broker:dev`, `config` → every `config:*`. */
function pageCommands(page: string): string[] {
  const name = page.replace(/^commands\//, '').replace(/\.md$/, '')
  return ids.filter((id) => id === name || id === name.replace('-', ':') || id.startsWith(`${name}:`))
}

describe('docs match the CLI', () => {
  it('every crabbox command line in the docs and the README uses flags that command has', () => {
    const wrong: string[] = []
    let checked = 0
    for (const page of [...pages, '../README.md']) {
      for (const { line, id, flags } of invocations(readFileSync(join(docsDir, page), 'utf8'))) {
        if (!id) continue
        checked += flags.length
        const known = flagsOf(id)
        for (const flag of flags)
          if (!known.has(flag) && !everywhere.has(flag)) wrong.push(`${page}: --${flag} (crabbox ${id.replaceAll(':', ' ')}): ${line}`)
      }
    }
    expect(checked).toBeGreaterThan(50)
    expect(wrong).toEqual([])
  })

  it('every flag in a command page or in docs/config.md flag tables exists', () => {
    const wrong: string[] = []
    for (const page of pages.filter((file) => file.startsWith('commands/'))) {
      const commands = pageCommands(page)
      if (commands.length === 0) continue
      const known = new Set(commands.flatMap((id) => [...flagsOf(id)]))
      for (const flag of tableFlags(readFileSync(join(docsDir, page), 'utf8'))) if (!known.has(flag)) wrong.push(`${page}: --${flag}`)
    }
    const anyCommand = new Set(ids.flatMap((id) => [...flagsOf(id)]))
    const config = readFileSync(join(docsDir, 'config.md'), 'utf8')
    const flagTable = config.slice(config.indexOf('## Flags that override config'))
    for (const flag of tableFlags(flagTable.slice(0, flagTable.indexOf('\n## ', 5))))
      if (!anyCommand.has(flag)) wrong.push(`config.md: --${flag}`)
    expect(wrong).toEqual([])
  })

  it('the exit-code list is the one the CLI uses', () => {
    const cli = readFileSync(join(docsDir, 'cli.md'), 'utf8')
    const list = /^Exit codes: (.*)$/m.exec(cli)?.[1] ?? ''
    const documented = [...list.matchAll(/(?:^|, )(\d+) /g)].map((match) => Number(match[1]))
    expect(documented.sort((a, b) => a - b)).toEqual(Object.values(ExitCode).sort((a, b) => a - b))
  })
})
