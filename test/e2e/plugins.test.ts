import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { cliHome, repoRoot, runCli } from '../support/cli.js'

const home = cliHome()
const pluginDir = mkdtempSync(join(tmpdir(), 'crabbox-plugin-'))
afterAll(() => {
  rmSync(home.dir, { recursive: true, force: true })
  rmSync(pluginDir, { recursive: true, force: true })
})

/** The smallest oclif plugin: ESM, one compiled command, @oclif/core from our node_modules. */
function writePlugin(dir: string): void {
  mkdirSync(join(dir, 'commands'))
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'crabbox-plugin-hello', version: '1.0.0', type: 'module', oclif: { commands: './commands' } }),
  )
  writeFileSync(
    join(dir, 'commands', 'hello.js'),
    [
      "import { Command } from '@oclif/core'",
      'export default class Hello extends Command {',
      "  static summary = 'Say hello from a plugin'",
      "  async run() { this.log('hello from a linked plugin') }",
      '}',
      '',
    ].join('\n'),
  )
  symlinkSync(join(repoRoot, 'node_modules'), join(dir, 'node_modules'), 'dir')
}

describe('plugins', () => {
  it('a local plugin links in, runs through crabbox, and unlinks', async () => {
    writePlugin(pluginDir)
    const link = await runCli(['plugins', 'link', pluginDir], { home })
    expect(link.code, link.stderr).toBe(0)

    const listed = await runCli(['plugins'], { home })
    expect(listed.stdout).toContain('crabbox-plugin-hello 1.0.0 (link)')
    const hello = await runCli(['hello'], { home })
    expect(hello).toMatchObject({ code: 0, stdout: 'hello from a linked plugin\n' })
    const help = await runCli(['--help'], { home })
    expect(help.stdout).toContain('Say hello from a plugin')

    const unlink = await runCli(['plugins', 'unlink', 'crabbox-plugin-hello'], { home })
    expect(unlink.code, unlink.stderr).toBe(0)
    const gone = await runCli(['hello'], { home })
    expect(gone.code).toBe(2)
    expect(gone.stderr).toContain('command hello not found')
  })

  it('autocomplete prints shell setup instructions', async () => {
    const result = await runCli(['autocomplete', 'bash'], { home })
    expect(result.code).toBe(0)
    expect(result.stdout).toContain('crabbox autocomplete')
  })
})
