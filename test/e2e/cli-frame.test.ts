import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, statSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { homePerTest, put as putFile } from '../support/fixtures.js'
import { cliPath, repoRoot, runCli, type CliHome } from '../support/cli.js'

const home = homePerTest()

const userFile = (h: CliHome) => join(h.env.XDG_CONFIG_HOME, 'crabbox', 'config.yaml')
const put = (path: string, text: string) => putFile(dirname(path), basename(path), text)
/** A git repo inside the home with a subdirectory to run from. */
const gitRepo = (h: CliHome) => {
  const repo = join(h.dir, 'repo')
  mkdirSync(join(repo, 'packages', 'app'), { recursive: true })
  execFileSync('git', ['init', '-q', repo])
  return { repo, sub: join(repo, 'packages', 'app') }
}

describe('CLI frame', () => {
  it('--version prints the bare package version', async () => {
    const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8'))
    const result = await runCli(['--version'], { home: home() })
    expect(result).toMatchObject({ code: 0, stdout: `${version}\n`, stderr: '' })
  })

  it('with no arguments prints help listing the commands', async () => {
    const result = await runCli([], { home: home() })
    expect(result.code).toBe(0)
    for (const topic of ['config', 'plugins', 'autocomplete', 'help']) expect(result.stdout).toMatch(new RegExp(`^\\s+${topic}\\s`, 'm'))
  })

  it('help <command> shows the summary, flags and examples', async () => {
    const result = await runCli(['help', 'config', 'set-broker'], { home: home() })
    expect(result.code).toBe(0)
    expect(result.stdout).toContain('Store the broker URL and tokens')
    expect(result.stdout).toContain('--token-stdin')
    expect(result.stdout).toContain('EXAMPLES')
    expect(result.stdout).toContain('$ crabbox config set-broker --url https://crabbox.example.com')
    const short = await runCli(['config', 'set-broker', '-h'], { home: home() })
    expect(short.code).toBe(0)
    expect(short.stdout).toContain('Store the broker URL and tokens')
  })

  it('a bad flag or a missing required flag is exit 2', async () => {
    const h = home()
    expect((await runCli(['config', 'show', '--bogus'], { home: h })).code).toBe(2)
    const missing = await runCli(['config', 'set-broker'], { home: h })
    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain('url')
  })

  it('a flag that fails validation is exit 2 with or without --json, and --json gets the JSON error shape', async () => {
    const h = home()
    const plain = await runCli(['sync-plan', '--limit', '0'], { home: h })
    expect(plain.code).toBe(2)
    expect(plain.stderr).toContain('--limit')
    for (const args of [
      ['sync-plan', '--json', '--limit', '0'],
      ['config', 'show', '--bogus', '--json'],
      ['config', 'set-broker', '--json'],
    ]) {
      const json = await runCli(args, { home: h })
      expect(json.code).toBe(2)
      const { error } = JSON.parse(json.stdout)
      expect(error).toMatchObject({ code: 'usage', exitCode: 2 })
      expect(error.message).toMatch(/--limit|--bogus|url/)
      expect(error.hint).toContain(`crabbox ${args[0]}`)
    }
  })

  it('a bad duration flag is exit 2 naming the flag and the expected form', async () => {
    const h = home()
    const plain = await runCli(['status', 'blue-prawn', '--wait', '--wait-timeout', 'soon'], { home: h })
    expect(plain.code).toBe(2)
    expect(plain.stderr).toContain('--wait-timeout')
    expect(plain.stderr).toContain('a duration like 30s, 15m or 2h')
    const json = await runCli(['status', 'blue-prawn', '--wait', '--wait-timeout', 'soon', '--json'], { home: h })
    expect(json.code).toBe(2)
    const { error } = JSON.parse(json.stdout)
    expect(error).toMatchObject({ code: 'usage', exitCode: 2 })
    expect(error.message).toContain('--wait-timeout')
    for (const args of [
      ['attach', 'run_0123456789ab', '--poll', '1x'],
      ['heartbeat', '--id', 'blue-prawn', '--idle-timeout', 'later'],
      ['run', '--ttl', 'forever', '--', 'true'],
    ]) {
      const result = await runCli(args, { home: h })
      expect(result.code).toBe(2)
      expect(result.stderr).toContain(args.find((arg) => arg.startsWith('--'))!)
    }
  })

  it('an unexpected failure is exit 1', async () => {
    const h = home()
    mkdirSync(join(h.dir, 'a-directory'))
    const result = await runCli(['config', 'set-broker', '--url', 'https://b.test'], {
      home: h,
      env: { CRABBOX_CONFIG: join(h.dir, 'a-directory') },
    })
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('error: EISDIR')
    expect(result.stderr).toContain('--debug')
    const json = await runCli(['config', 'set-broker', '--url', 'https://b.test', '--json'], {
      home: h,
      env: { CRABBOX_CONFIG: join(h.dir, 'a-directory') },
    })
    expect(json.code).toBe(1)
    expect(JSON.parse(json.stdout).error).toMatchObject({ code: 'unexpected', exitCode: 1 })
  })
})

describe('config through the CLI', () => {
  it('layers: user file < repo file at the git root (run from a subdirectory) < env', async () => {
    const h = home()
    const { repo, sub } = gitRepo(h)
    put(userFile(h), 'class: standard\nworkRoot: /from-user\nttl: 10m\nsync:\n  exclude: [dist]\n')
    put(join(repo, '.crabbox.yaml'), 'class: fast\nttl: 20m\nsync:\n  exclude: [coverage]\n')
    const result = await runCli(['config', 'show', '--json'], { home: h, cwd: sub, env: { CRABBOX_TTL: '30m' } })
    expect(result.code).toBe(0)
    const view = JSON.parse(result.stdout)
    expect(view.config).toMatchObject({
      class: 'fast',
      workRoot: '/from-user',
      ttl: '30m',
      provider: 'local',
      sync: { exclude: ['dist', 'coverage'] },
    })
    expect(view.sources).toMatchObject({ class: join(repo, '.crabbox.yaml'), workRoot: userFile(h), ttl: 'env CRABBOX_TTL' })
    expect(view.files).toEqual([userFile(h), join(repo, '.crabbox.yaml')])

    const human = await runCli(['config', 'show'], { home: h, cwd: sub })
    expect(human.stdout).toMatch(/^class\s+= fast {2}\(.*\.crabbox\.yaml\)$/m)
  })

  it('bad YAML is exit 2 with the file and line on stderr, and a JSON error under --json', async () => {
    const h = home()
    put(userFile(h), 'class: fast\nsync: {exclude: [a\n')
    const result = await runCli(['config', 'show'], { home: h })
    expect(result.code).toBe(2)
    expect(result.stdout).toBe('')
    expect(result.stderr).toMatch(new RegExp(`^error: invalid YAML in ${userFile(h)} line \\d+`, 'm'))
    expect(result.stderr).toContain(`Fix ${userFile(h)}`)

    const json = await runCli(['config', 'show', '--json'], { home: h })
    expect(json.code).toBe(2)
    const { error } = JSON.parse(json.stdout)
    expect(error).toMatchObject({ code: 'usage', exitCode: 2 })
    expect(error.message).toContain(userFile(h))
  })

  it('an invalid value is exit 2 naming file, line and what was expected', async () => {
    const h = home()
    const { repo } = gitRepo(h)
    put(join(repo, 'crabbox.yaml'), 'class: fast\nssh:\n  port: twenty-two\n')
    const result = await runCli(['config', 'show'], { home: h, cwd: repo })
    expect(result.code).toBe(2)
    expect(result.stderr).toContain(`${join(repo, 'crabbox.yaml')} line 3: ssh.port: expected a TCP port number`)
  })

  it('an unknown key is a warning on stderr naming the key and file; the rest loads', async () => {
    const h = home()
    put(userFile(h), 'class: fast\nflavour: spicy\n')
    const result = await runCli(['config', 'show', '--json'], { home: h })
    expect(result.code).toBe(0)
    expect(result.stderr).toContain(`warning: unknown config key flavour in ${userFile(h)} line 2`)
    expect(JSON.parse(result.stdout).config.class).toBe('fast')
  })

  it('an invalid env value is exit 2 naming the variable', async () => {
    const result = await runCli(['config', 'show'], { home: home(), env: { CRABBOX_SYNC_DELETE: 'sometimes' } })
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('CRABBOX_SYNC_DELETE')
  })

  it('set-broker writes tokens from stdin 0600 in a 0700 folder; config show says only "set"', async () => {
    const h = home()
    put(userFile(h), '# my settings\nclass: fast\n')
    const set = await runCli(
      ['config', 'set-broker', '--url', 'https://broker.test/', '--token-stdin', '--admin-token-stdin', '--provider', 'aws'],
      {
        home: h,
        input: '  user-secret  \nadmin-secret\n',
      },
    )
    expect(set.code).toBe(0)
    expect(set.stdout).toContain('broker=https://broker.test token=set admin-token=set provider=aws')
    expect(statSync(userFile(h)).mode & 0o777).toBe(0o600)
    expect(statSync(join(userFile(h), '..')).mode & 0o777).toBe(0o700)
    const text = readFileSync(userFile(h), 'utf8')
    expect(text).toContain('# my settings')
    expect(text).toContain('token: user-secret')

    const show = await runCli(['config', 'show', '--json'], { home: h })
    expect(show.stdout).not.toContain('secret')
    const view = JSON.parse(show.stdout)
    expect(view.config.broker).toEqual({ url: 'https://broker.test', provider: 'aws', token: 'set', adminToken: 'set' })
    expect(view.config).toMatchObject({ provider: 'aws', class: 'fast' })
  })

  it('set-broker with --token-stdin and nothing on stdin is exit 2 and writes nothing', async () => {
    const h = home()
    const result = await runCli(['config', 'set-broker', '--url', 'https://broker.test', '--token-stdin'], { home: h, input: '' })
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('broker token')
    expect(() => statSync(userFile(h))).toThrow()
  })

  it('CRABBOX_CONFIG replaces the user config for reading, writing and config path', async () => {
    const h = home()
    put(userFile(h), 'class: standard\n')
    const custom = join(h.dir, 'elsewhere', 'crabbox.yaml')
    const env = { CRABBOX_CONFIG: custom }
    expect((await runCli(['config', 'path'], { home: h, env })).stdout).toBe(`${custom}\n`)
    expect((await runCli(['config', 'set-broker', '--url', 'https://b.test'], { home: h, env })).code).toBe(0)
    const view = JSON.parse((await runCli(['config', 'show', '--json'], { home: h, env })).stdout)
    expect(view.config.class).toBe('beast')
    expect(view.config.broker.url).toBe('https://b.test')
    // With a broker and no provider chosen, the broker chooses (nothing is sent).
    expect(view.config.provider).toBe('broker')
    expect(view.files).toEqual([custom])
  })

  it('errors are coloured on a terminal unless NO_COLOR is set', () => {
    const h = home()
    put(userFile(h), 'a: [\n')
    // `script` gives the CLI a real pseudo-terminal on stdout and stderr.
    const onTty = (noColor: boolean) => {
      const env: Record<string, string | undefined> = { ...process.env, ...h.env, TERM: 'xterm' }
      if (!noColor) delete env.NO_COLOR
      return spawnSync('script', ['-qec', `${process.execPath} ${cliPath} config show`, '/dev/null'], {
        env: env as NodeJS.ProcessEnv,
        encoding: 'utf8',
        timeout: 60_000,
      }).stdout
    }
    expect(onTty(false)).toContain('\u001b[31merror:')
    const plain = onTty(true)
    expect(plain).toContain('error: invalid YAML')
    expect(plain).not.toContain('\u001b[')
  })
})
