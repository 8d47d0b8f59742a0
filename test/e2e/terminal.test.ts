import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { cliHome, cliPath, runCli, type CliHome } from '../support/cli.js'
import { gitRepo, sleep, until } from '../support/fixtures.js'
import { processesMatching } from '../support/processes.js'

// The real CLI under a pseudo-terminal of fixed size (tmux on its own socket), its screen read back with capture-pane.
const socket = `crabbox-e2e-${process.pid}`
const tmux = (...args: string[]) => execFileSync('tmux', ['-L', socket, ...args], { encoding: 'utf8' })
const SPINNER = /[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]/
const shq = (value: string) => `'${value.replace(/'/g, `'\\''`)}'`
// Each code point is one column here: the test prints ASCII, ✓, ·, █ and ░ only.
const width = (line: string) => [...line].length

const dirs: string[] = []
const homes: CliHome[] = []
afterAll(() => {
  try {
    tmux('kill-server')
  } catch {
    // no server left
  }
  for (const home of homes) {
    for (const pid of processesMatching((p) => p.cmdline.includes(home.dir))) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone
      }
    }
  }
  for (const dir of [...dirs, ...homes.map((h) => h.dir)]) rmSync(dir, { recursive: true, force: true })
})

/** A checkout with `count` incompressible files of `size` bytes next to a small one. */
function bigRepo(count: number, size: number): string {
  const repo = gitRepo('crabbox-term-repo-')
  for (let i = 0; i < count; i++) writeFileSync(join(repo, `blob-${i}.bin`), randomBytes(size))
  execFileSync('git', ['add', '.'], { cwd: repo })
  dirs.push(repo)
  return repo
}

interface Screen {
  /** The session's name, for resize-window. */
  name: string
  /** Everything the CLI wrote to the terminal, escape codes included. */
  raw(): string
  /** The visible screen (and scrollback), one row per line, trailing spaces trimmed. */
  screen(): string[]
  /** Resolves with the exit code once the command finished. */
  exit(): Promise<number>
}

/** Starts `crabbox <args>` in a tmux window of `columns` × 30 and records the raw stream. */
function inTerminal(args: string[], repo: string, columns = 80, env: Record<string, string | undefined> = {}): Screen {
  const dir = mkdtempSync(join(tmpdir(), 'crabbox-term-'))
  dirs.push(dir)
  const home = cliHome()
  homes.push(home)
  const vars = { ...home.env, CRABBOX_NO_AGENT: '1', ...env }
  const script = [
    `cd ${shq(repo)}`,
    `while [ ! -e ${shq(join(dir, 'go'))} ]; do sleep 0.05; done`,
    `env ${Object.entries(vars)
      .map(([k, v]) => (v === undefined ? `-u ${k}` : `${k}=${shq(v)}`))
      .sort((a, b) => Number(!a.startsWith('-u')) - Number(!b.startsWith('-u')))
      .join(' ')} ${shq(process.execPath)} ${shq(cliPath)} ${args.map(shq).join(' ')}`,
    `echo "__EXIT=$?"`,
    'sleep 600',
  ].join('\n')
  writeFileSync(join(dir, 'run.sh'), script)
  const name = `t${randomBytes(4).toString('hex')}`
  tmux('new-session', '-d', '-s', name, '-x', String(columns), '-y', '30', `sh ${shq(join(dir, 'run.sh'))}`)
  tmux('set-option', '-t', name, 'history-limit', '2000')
  const rawFile = join(dir, 'raw')
  tmux('pipe-pane', '-t', name, '-o', `cat >> ${shq(rawFile)}`)
  writeFileSync(join(dir, 'go'), '')
  const screen = () => tmux('capture-pane', '-p', '-t', name, '-S', '-2000').replace(/\n+$/, '').split('\n')
  return {
    name,
    raw: () => (existsSync(rawFile) ? readFileSync(rawFile, 'utf8') : ''),
    screen,
    async exit() {
      const line = await until('the command to finish', () => screen().find((l) => l.startsWith('__EXIT=')), 120_000, 100)
      return Number(line.slice('__EXIT='.length))
    },
  }
}

/** The lines the CLI left, without the test's own exit marker and the empty rows below. */
const printed = (screen: string[]) => screen.filter((line) => line.trim() !== '' && !line.startsWith('__EXIT='))

describe('the terminal experience', () => {
  it('a cold sync shows a bar that advances, then one line per phase, the output and the summary', async () => {
    const repo = bigRepo(48, 2 * 1024 * 1024)
    const term = inTerminal(['run', '--', 'sh', '-c', 'for i in 1 2 3; do echo "remote line $i of the command"; done'], repo)
    expect(await term.exit()).toBe(0)
    const lines = printed(term.screen())
    for (const line of lines) expect(width(line), line).toBeLessThanOrEqual(80)
    expect(lines.join('\n')).not.toMatch(SPINNER)
    expect(lines).toContainEqual(expect.stringMatching(/^local provider: commands run on this machine as \S+, without isolation$/))
    expect(lines).toContainEqual(expect.stringMatching(/^✓ leased cbx_[0-9a-f]{12} \([a-z]+-[a-z]+, local\) \d+\.\ds$/))
    expect(lines).toContainEqual(expect.stringMatching(/^✓ synced 49 files, 96\.0 MiB \d+(\.\d)?s$/))
    for (const i of [1, 2, 3]) expect(lines).toContain(`remote line ${i} of the command`)
    expect(lines.at(-1)).toMatch(/^exit 0 · total \S+ · sync \S+ · command \S+$/)
    // The bar advanced: several distinct percentages went by on the live line.
    // Each frame of the live line starts by turning autowrap off.
    const drawn = term.raw().split('\u001b[?7l')
    const percents = new Set(drawn.flatMap((frame) => [...(/ (\d{1,3})% \d/.exec(frame) ?? [])].slice(1)))
    expect(percents.size, [...percents].join(' ')).toBeGreaterThanOrEqual(3)
    expect(drawn.some((frame) => / MiB\/s /.test(frame) && /\d+\/49 files/.test(frame))).toBe(true)
    // Remote output never shares a row with the status line: no spinner frame between its first and last line.
    const raw = term.raw()
    const between = raw.slice(raw.indexOf('remote line 1'), raw.indexOf('remote line 3'))
    expect(between).not.toMatch(SPINNER)
  }, 180_000)

  it('a resize in the middle of a transfer leaves no debris', async () => {
    const repo = bigRepo(48, 2 * 1024 * 1024)
    const term = inTerminal(['run', '--', 'echo', 'after the resize'], repo, 100)
    await until('the transfer bar', () => / \d+% \d/.test(term.raw()), 120_000, 20)
    tmux('resize-window', '-t', term.name, '-x', '40')
    await sleep(300)
    tmux('resize-window', '-t', term.name, '-x', '70')
    expect(await term.exit()).toBe(0)
    const lines = printed(term.screen())
    expect(lines.join('\n')).not.toMatch(SPINNER)
    for (const line of lines) expect(width(line), line).toBeLessThanOrEqual(70)
    expect(lines).toContain('after the resize')
    expect(lines.join('\n')).toMatch(/✓ synced 49 files, 96\.0 MiB/)
  }, 180_000)

  it('a failure ends with a red summary naming the exit code; --quiet leaves only the output', async () => {
    const repo = bigRepo(0, 0)
    const failing = inTerminal(['run', '--', 'sh', '-c', 'echo failing now >&2; exit 3'], repo)
    expect(await failing.exit()).toBe(3)
    const lines = printed(failing.screen())
    expect(lines).toContain('failing now')
    expect(lines.at(-1)).toMatch(/^exit 3 · total \S+ · sync \S+ · command \S+$/)
    expect(lines.join('\n')).not.toMatch(SPINNER)
    // Red, unless NO_COLOR (the test homes set it; this run clears it).
    const colored = inTerminal(['run', '--', 'false'], repo, 80, { NO_COLOR: undefined })
    expect(await colored.exit()).toBe(1)
    expect(colored.raw()).toContain('\u001b[31mexit 1 · total')

    const quiet = inTerminal(['run', '-q', '--', 'echo', 'only this'], repo)
    expect(await quiet.exit()).toBe(0)
    expect(printed(quiet.screen())).toEqual(['only this'])
  }, 180_000)

  it('a pipe gets plain timestamped lines without escape codes; GitHub Actions gets groups and a job summary', async () => {
    const repo = bigRepo(0, 0)
    const home = cliHome()
    homes.push(home)
    const piped = await runCli(['run', '--', 'echo', 'piped'], { cwd: repo, home, env: { CRABBOX_NO_AGENT: '1' } })
    expect(piped.code).toBe(0)
    // eslint-disable-next-line no-control-regex -- asserting there are none
    expect(piped.stderr).not.toMatch(/[\u0000-\u0009\u000b-\u001f]/)
    expect(piped.stderr).toMatch(/^\d\d:\d\d:\d\d leasing a local runner$/m)
    expect(piped.stderr).toMatch(/^\d\d:\d\d:\d\d ✓ leased cbx_[0-9a-f]{12} \(\S+, local\) \d+\.\ds$/m)
    expect(piped.stderr).toMatch(/^\d\d:\d\d:\d\d ✓ synced 1 file, 24 B \d+\.\ds$/m)
    expect(piped.stderr).not.toContain('::group::')

    const summary = join(home.dir, 'step-summary.md')
    const ci = await runCli(['run', '--', 'echo', 'in ci'], {
      cwd: repo,
      home,
      env: { CRABBOX_NO_AGENT: '1', CI: 'true', GITHUB_ACTIONS: 'true', GITHUB_STEP_SUMMARY: summary },
    })
    expect(ci.code).toBe(0)
    expect(ci.stdout).toBe('in ci\n')
    const groups = ci.stderr.split('\n').filter((line) => line.startsWith('::'))
    expect(groups[0]).toBe('::group::leasing a local runner')
    expect(groups).toContain('::endgroup::')
    expect(groups.filter((line) => line.startsWith('::group::')).length).toBe(groups.filter((line) => line === '::endgroup::').length)
    expect(readFileSync(summary, 'utf8')).toMatch(/\| exit \| 0 \|/)
  }, 180_000)
})
