import { execFile, execFileSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cliHome, repoRoot, type CliHome } from '../support/cli.js'

/**
 * The build users get (`npm run build`: tsc, then each command bundled with @oclif/core),
 * made in a private copy of the package so the shared dist/ is never touched. NODE_DEBUG=module
 * makes Node log every CommonJS load, which is how @oclif/core from node_modules shows up.
 */

let scratch: string
let pkg: string
let home: CliHome

const run = async (args: string[], env: Record<string, string> = {}) => {
  const { stdout, stderr } = await promisify(execFile)(process.execPath, [join(pkg, 'bin', 'run.js'), ...args], {
    cwd: scratch,
    env: { ...process.env, ...home.env, NODE_EXTRA_CA_CERTS: '', ...env },
  })
  return { stdout, stderr }
}
const coreFromNodeModules = async (args: string[]) => (await run(args, { NODE_DEBUG: 'module' })).stderr.includes('@oclif/core/lib')

beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'crabbox-build-'))
  pkg = join(scratch, 'crabbox')
  mkdirSync(pkg)
  for (const entry of ['bin', 'package.json']) cpSync(join(repoRoot, entry), join(pkg, entry), { recursive: true })
  symlinkSync(join(repoRoot, 'node_modules'), join(pkg, 'node_modules'))
  execFileSync(process.execPath, [join(repoRoot, 'scripts', 'build.js'), '--root', pkg, '--ignore-type-errors'], { stdio: 'ignore' })
  home = cliHome()
})

afterAll(() => {
  rmSync(scratch, { recursive: true, force: true })
  if (home) rmSync(home.dir, { recursive: true, force: true })
})

describe('the bundled build', () => {
  it('runs crabbox commands on the bundled @oclif/core, never the one in node_modules', async () => {
    expect((await run(['config', 'path'])).stdout).toBe(`${join(home.dir, 'config', 'crabbox', 'config.yaml')}\n`)
    expect((await run(['ssh', '--help'])).stdout).toContain('--static-host')
    expect(await coreFromNodeModules(['config', 'path'])).toBe(false)
    expect(await coreFromNodeModules(['ssh', '--help'])).toBe(false)
  })

  it('bundles no library into the fast path, and no optional peer anywhere', () => {
    // A library folded into the one-file fast path (beyond the two small ones it is built with)
    // is compiled on every start; an optional peer (the Daytona SDK) bundled in would also stop
    // being optional.
    expect(
      readFileSync(join(repoRoot, 'dist', 'fast-path.js'), 'utf8').match(/node_modules\/(?!valibot\/|ignore\/)[@\w.-]+/)?.[0],
    ).toBeUndefined()
    for (const name of readdirSync(join(repoRoot, 'dist', 'chunks')))
      expect(readFileSync(join(repoRoot, 'dist', 'chunks', name), 'utf8').match(/node_modules\/@daytona/)?.[0], name).toBeUndefined()
  })

  it('help, plugins and autocomplete (the core plugins, loaded only for them) still work', async () => {
    const help = (await run(['help'])).stdout
    for (const command of ['plugins', 'autocomplete', 'ssh', 'run']) expect(help).toMatch(new RegExp(`^\\s+${command}\\s`, 'm'))
    expect((await run(['plugins'])).stdout).toContain('No plugins installed')
    expect((await run(['help', 'ssh'])).stdout).toContain('--static-host')
  })

  it('a plain tsc rebuild afterwards is what runs (no stale bundle), on the node_modules @oclif/core', async () => {
    execFileSync(
      join(repoRoot, 'node_modules', '.bin', 'tsc'),
      ['-p', join(repoRoot, 'tsconfig.build.json'), '--outDir', join(pkg, 'dist')],
      { stdio: 'ignore' },
    )
    expect(await coreFromNodeModules(['config', 'path'])).toBe(true)
    expect((await run(['config', 'path'])).stdout).toBe(`${join(home.dir, 'config', 'crabbox', 'config.yaml')}\n`)
  })
})
