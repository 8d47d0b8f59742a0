import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { repoRoot } from './cli.js'

export interface PackedFile {
  path: string
  size: number
}

export interface InstalledPackage {
  /** The folder the tarball was packed into and installed from (outside the repo). */
  dir: string
  tarball: string
  files: PackedFile[]
  /** Packed (gzip) and unpacked sizes as npm reports them. */
  size: number
  unpackedSize: number
  /** `npm i -g --prefix` target: `<prefix>/bin/crabbox`, `<prefix>/lib/node_modules/crabbox`. */
  prefix: string
  bin: string
  root: string
}

const npm = (args: string[], cwd: string) =>
  execFileSync('npm', args, {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, npm_config_update_notifier: 'false' },
  })

/** `npm pack` of the built package (the test run's private copy, which holds every file the package lists) into a new folder outside the repo. */
export function pack(): Pick<InstalledPackage, 'dir' | 'tarball' | 'files' | 'size' | 'unpackedSize'> {
  const source = process.env.CRABBOX_E2E_PACKAGE ?? repoRoot
  const dir = mkdtempSync(join(tmpdir(), 'crabbox-npm-package-'))
  const [packed] = JSON.parse(npm(['pack', '--json', '--ignore-scripts', '--pack-destination', dir], source)) as {
    size: number
    unpackedSize: number
    files: PackedFile[]
  }[]
  const tarball = join(
    dir,
    readdirSync(dir).find((name) => name.endsWith('.tgz'))!,
  )
  return { dir, tarball, files: packed.files, size: packed.size, unpackedSize: packed.unpackedSize }
}

/**
 * `pack()`, then `npm i -g --prefix` of the tarball into an empty prefix, from that folder
 * outside the repository and offline: every dependency comes from the npm cache (`.ci/run`
 * fills it first with `.ci/warm-package-cache`), nothing is downloaded at test time.
 */
export function packAndInstall(): InstalledPackage {
  const { dir, tarball, files, size, unpackedSize } = pack()
  const prefix = join(dir, 'prefix')
  try {
    npm(['install', '--global', '--prefix', prefix, '--offline', '--no-audit', '--no-fund', tarball], dir)
  } catch (error) {
    const stderr = String((error as { stderr?: string }).stderr ?? '')
    throw new Error(
      stderr.includes('ENOTCACHED')
        ? `the npm cache lacks crabbox's dependencies: run .ci/warm-package-cache once (it needs the registry)\n${stderr}`
        : stderr,
      { cause: error },
    )
  }
  return {
    dir,
    tarball,
    files,
    size,
    unpackedSize,
    prefix,
    bin: join(prefix, 'bin', 'crabbox'),
    root: join(prefix, 'lib', 'node_modules', 'crabbox'),
  }
}
