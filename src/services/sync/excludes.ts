import { readFileSync } from 'node:fs'
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
export function loadExcludes(repoRoot: string, config: Pick<Config['sync'], 'exclude'>): Excludes {
  const patterns = excludePatterns(repoRoot, config)
  return { patterns, matcher: ignore().add(patterns) }
}

/**
 * The patterns alone, for a check that only compares them (snapshot.ts): building the matcher
 * compiles every pattern, ≈ 1 ms the warm run's unchanged check does not need.
 */
export function excludePatterns(repoRoot: string, config: Pick<Config['sync'], 'exclude'>): string[] {
  let fromFile: string[] = []
  try {
    fromFile = readFileSync(join(repoRoot, '.crabboxignore'), 'utf8')
      .split(/\r?\n/)
      .map((line) => line.trimEnd())
      .filter((line) => line !== '' && !line.startsWith('#'))
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  return [...DEFAULT_EXCLUDES, ...config.exclude, ...fromFile]
}
