import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import ignore, { type Ignore } from 'ignore'
import type { Config } from '../../config/schema.js'

/**
 * Never synced: VCS data, dependency trees, build output and tool caches that
 * the runner rebuilds itself. `.crabbox` is
 * our own metadata directory outside git.
 */
export const DEFAULT_EXCLUDES: readonly string[] = [
  '.git',
  '._*',
  'node_modules',
  '.turbo',
  '.next',
  'dist',
  'dist-runtime',
  'coverage',
  '.cache',
  '.local',
  '.swiftpm',
  '.build',
  'apps/*/.build',
  '.pnpm-store',
  '.npm',
  '.yarn/cache',
  '.venv',
  '__pycache__',
  '.pytest_cache',
  '.mypy_cache',
  '.ruff_cache',
  '.gradle',
  'target',
  '.crabbox',
]

export interface Excludes {
  /** Every pattern in effect, in order: defaults, `sync.exclude`, `.crabboxignore`. */
  patterns: string[]
  matcher: Ignore
}

/** Builds the exclude matcher with gitignore semantics (the `ignore` package). */
export async function loadExcludes(repoRoot: string, config: Pick<Config['sync'], 'exclude'>): Promise<Excludes> {
  let fromFile: string[] = []
  try {
    fromFile = (await readFile(join(repoRoot, '.crabboxignore'), 'utf8'))
      .split(/\r?\n/)
      .map((line) => line.trimEnd())
      .filter((line) => line !== '' && !line.startsWith('#'))
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  const patterns = [...DEFAULT_EXCLUDES, ...config.exclude, ...fromFile]
  return { patterns, matcher: ignore().add(patterns) }
}
