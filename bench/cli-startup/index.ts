// CLI start-up: `crabbox config path` with and without oclif.manifest.json, against the
// floor of starting Node at all. Run after `npm run build`: npm run bench -- cli-startup
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cliHome, cliPath, repoRoot } from '../../test/support/cli.js'

const runs = Number(process.argv[2] ?? 30)
const manifest = join(repoRoot, 'oclif.manifest.json')
const aside = join(mkdtempSync(join(tmpdir(), 'crabbox-bench-')), 'oclif.manifest.json')
const home = cliHome()
// NODE_EXTRA_CA_CERTS adds ~115 ms to every Node start and is not what users pay.
const env = { ...process.env, ...home.env, NODE_EXTRA_CA_CERTS: undefined } as NodeJS.ProcessEnv
delete env.NODE_EXTRA_CA_CERTS

function hyperfine(commands: Record<string, string>): Record<string, number> {
  const out = join(home.dir, 'result.json')
  const args = ['-N', '-w', '5', '-r', String(runs), '--export-json', out]
  for (const [name, command] of Object.entries(commands)) args.push('-n', name, command)
  const result = spawnSync('hyperfine', args, { env, stdio: ['ignore', 'ignore', 'inherit'] })
  if (result.status !== 0) throw new Error('hyperfine failed (is it installed?)')
  const data = JSON.parse(readFileSync(out, 'utf8')) as { results: Array<{ command: string; median: number }> }
  return Object.fromEntries(data.results.map((r) => [r.command, r.median * 1000]))
}

try {
  execFileSync(process.execPath, [join(repoRoot, 'node_modules', 'oclif', 'bin', 'run.js'), 'manifest'], { cwd: repoRoot, stdio: 'ignore', env })
  const node = `${process.execPath}`
  const withManifest = hyperfine({ node: `${node} -e 0`, manifest: `${node} ${cliPath} config path` })
  renameSync(manifest, aside)
  const without = hyperfine({ scan: `${node} ${cliPath} config path` })
  renameSync(aside, manifest)
  const rows = { 'node -e 0 (floor)': withManifest.node, 'config path, manifest': withManifest.manifest, 'config path, no manifest': without.scan }
  for (const [name, ms] of Object.entries(rows)) process.stdout.write(`${name.padEnd(28)} ${ms.toFixed(1)} ms (median of ${runs})\n`)
  process.stdout.write(`no-manifest / manifest: ${(without.scan / withManifest.manifest).toFixed(2)}x\n`)
} finally {
  if (existsSync(aside)) renameSync(aside, manifest)
  rmSync(home.dir, { recursive: true, force: true })
}
