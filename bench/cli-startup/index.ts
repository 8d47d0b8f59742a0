// CLI start-up: `crabbox config path` (a command that does almost nothing, so what is measured
// is start-up) from the build users get (`npm run build`: each command bundled with
// @oclif/core) against the plain tsc output of the same sources (what a start cost before the
// bundle), and the floor of starting Node at all.
//   npm run bench -- cli-startup [runs]
import { execFileSync, spawnSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cliHome, repoRoot } from '../../test/support/cli.js'
import { loadAverage, measure } from '../common.js'

const runs = Number(process.argv[2] ?? 30)
const scratch = mkdtempSync(join(tmpdir(), 'crabbox-bench-startup-'))
const home = cliHome()
// NODE_EXTRA_CA_CERTS adds ~115 ms to every Node start and is not what users pay.
const env = { ...process.env, ...home.env } as NodeJS.ProcessEnv
delete env.NODE_EXTRA_CA_CERTS

/** A private copy of the package (shared node_modules), so concurrent rebuilds of dist/ cannot skew it. */
function snapshot(name: string, build: (root: string) => void): string {
  const root = join(scratch, name)
  mkdirSync(root)
  for (const entry of ['bin', 'package.json']) cpSync(join(repoRoot, entry), join(root, entry), { recursive: true })
  symlinkSync(join(repoRoot, 'node_modules'), join(root, 'node_modules'))
  build(root)
  return join(root, 'bin', 'run.js')
}

/** Interleaved medians (bench/common.ts) of each command line, split on spaces. */
async function timed(commands: Record<string, string>): Promise<Record<string, number>> {
  const split = Object.fromEntries(Object.entries(commands).map(([name, line]) => [name, { args: line.split(' ') }]))
  return measure(split, { runs, warmup: 5, env, cwd: scratch })
}

try {
  process.stderr.write('building two snapshots (npm run build; tsc + oclif manifest) ...\n')
  const quiet = { stdio: 'ignore' as const, env }
  const bundled = snapshot('bundled', (root) =>
    execFileSync(process.execPath, [join(repoRoot, 'scripts', 'build.js'), '--root', root, '--ignore-type-errors'], quiet),
  )
  const plain = snapshot('tsc', (root) => {
    spawnSync(
      join(repoRoot, 'node_modules', '.bin', 'tsc'),
      ['-p', join(repoRoot, 'tsconfig.build.json'), '--outDir', join(root, 'dist')],
      quiet,
    )
    execFileSync(process.execPath, [join(repoRoot, 'node_modules', 'oclif', 'bin', 'run.js'), 'manifest'], { ...quiet, cwd: root })
  })
  const node = process.execPath
  const rows = await timed({
    'node -e 0 (floor)': `${node} -e 0`,
    'config path, tsc output': `${node} ${plain} config path`,
    'config path, bundled': `${node} ${bundled} config path`,
    'help (loads core plugins), bundled': `${node} ${bundled} help`,
    'list (no leases), bundled': `${node} ${bundled} list`,
    'crabbox --version (no oclif)': `${node} ${bundled} --version`,
  })
  for (const [name, ms] of Object.entries(rows)) process.stdout.write(`${name.padEnd(36)} ${ms.toFixed(1)} ms\n`)
  const over = (name: string) => rows[name] - rows['node -e 0 (floor)']
  process.stdout.write(
    `bundled / tsc output: ${(rows['config path, bundled'] / rows['config path, tsc output']).toFixed(2)}x; ` +
      `above the Node floor: ${over('config path, bundled').toFixed(1)} ms vs ${over('config path, tsc output').toFixed(1)} ms\n`,
  )
  process.stdout.write(`medians of ${runs} interleaved runs; load average ${loadAverage()}\n`)
} finally {
  rmSync(scratch, { recursive: true, force: true })
  rmSync(home.dir, { recursive: true, force: true })
}
