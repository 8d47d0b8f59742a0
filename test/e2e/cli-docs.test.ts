import { execFile } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { cliHome, repoRoot } from '../support/cli.js'

const home = cliHome()
afterAll(() => rmSync(home.dir, { recursive: true, force: true }))

describe('docs/cli.md', () => {
  it('matches the command metadata of the built CLI (run `npm run docs` when this fails)', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [join(repoRoot, 'scripts', 'gen-cli-docs.js'), '--stdout'], {
      cwd: repoRoot,
      env: { ...process.env, ...home.env },
      maxBuffer: 16 * 1024 * 1024,
    })
    const committed = readFileSync(join(repoRoot, 'docs', 'cli.md'), 'utf8')
    if (stdout !== committed) {
      const wanted = stdout.split('\n')
      const have = committed.split('\n')
      const line = wanted.findIndex((text, index) => text !== have[index])
      expect.fail(
        `docs/cli.md is out of date: run \`npm run build && npm run docs\` and commit docs/cli.md.\n` +
          `first difference at line ${line + 1}:\n  generated: ${wanted[line]}\n  committed: ${have[line]}`,
      )
    }
    expect(stdout).toContain('| [`crabbox config show`]')
  })
})
