import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { cliHome, cliPath, runCli, type CliHome } from '../support/cli.js'
import { gitRepo, homePerTest, put } from '../support/fixtures.js'
import { processesMatching } from '../support/processes.js'
import { startBroker } from '../support/broker.js'
import { sshHost } from '../support/ssh-host.js'

const home = homePerTest()
const userFile = (h: CliHome) => join(h.env.XDG_CONFIG_HOME, 'crabbox', 'config.yaml')
const keyFolders = (h: CliHome) => {
  const dir = join(h.env.XDG_CONFIG_HOME, 'crabbox', 'testboxes')
  return existsSync(dir) ? readdirSync(dir) : []
}

// Homes that start local runners: their processes are ended when the file is done.
const runnerHomes: CliHome[] = []
const runnerHome = () => {
  const made = cliHome()
  runnerHomes.push(made)
  return made
}
const repos: string[] = []
afterAll(() => {
  for (const made of runnerHomes) {
    for (const pid of processesMatching((p) => p.cmdline.includes(made.dir))) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone
      }
    }
    rmSync(made.dir, { recursive: true, force: true })
  }
  for (const repo of repos) rmSync(repo, { recursive: true, force: true })
})
const noAgent = { CRABBOX_NO_AGENT: '1', NODE_EXTRA_CA_CERTS: undefined }

describe('typos and mistakes', () => {
  it('an unknown command is exit 2 with the closest command, in the words the user typed', async () => {
    const h = home()
    const topic = await runCli(['config', 'shwo'], { home: h })
    expect(topic.code).toBe(2)
    expect(topic.stderr).toContain('error: command config shwo not found')
    expect(topic.stderr).toContain('Did you mean crabbox config show?')
    expect(topic.stderr).not.toContain('config:')
    const root = await runCli(['stpo', 'blue-prawn'], { home: h })
    expect(root.code).toBe(2)
    expect(root.stderr).toContain('Did you mean crabbox stop?')
    const topicTypo = await runCli(['confg', 'show'], { home: h })
    expect(topicTypo.code).toBe(2)
    expect(topicTypo.stderr).toContain('Did you mean crabbox config show?')
    const far = await runCli(['frobnicate'], { home: h })
    expect(far.code).toBe(2)
    expect(far.stderr).toContain('error: command frobnicate not found')
    expect(far.stderr).not.toContain('Did you mean')
  })

  it('an unknown flag suggests the closest flag, in text and in the --json hint', async () => {
    const h = home()
    const plain = await runCli(['list', '--provder', 'local'], { home: h })
    expect(plain.code).toBe(2)
    expect(plain.stderr).toContain('Did you mean --provider?')
    const json = await runCli(['status', 'blue-prawn', '--jsno', '--json'], { home: h })
    expect(json.code).toBe(2)
    expect(JSON.parse(json.stdout).error.hint).toContain('Did you mean --json?')
  })

  it('`run ls -la` says the command goes after --', async () => {
    const result = await runCli(['run', 'ls', '-la'], { home: home() })
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('The remote command goes after --: crabbox run -- ls -la')
    const withFlags = await runCli(['run', '--keep', 'ls', '-la'], { home: home() })
    expect(withFlags.stderr).toContain('crabbox run --keep -- ls -la')
  })

  it('heartbeat never takes the lease from piped stdin', async () => {
    const result = await runCli(['heartbeat'], { home: home(), input: 'blue-prawn\n' })
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('which lease?')
  })

  it('heartbeat takes the lease as a positional argument, like stop and status', async () => {
    const result = await runCli(['heartbeat', 'blue-prawn'], { home: home() })
    expect(result.stderr).not.toContain('Missing required flag')
    expect(result.stderr).toContain('heartbeats keep broker leases alive')
  })
})

describe('root help', () => {
  it('groups commands by workflow, keeps oclif plumbing at the end, and shows examples and docs', async () => {
    const result = await runCli([], { home: home() })
    expect(result.code).toBe(0)
    const out = result.stdout
    const at = (text: string) => out.indexOf(text)
    for (const section of ['EVERYDAY', 'BROKER', 'SETUP', 'MORE', 'EXAMPLES', 'DOCS']) expect(out).toMatch(new RegExp(`^${section}$`, 'm'))
    expect(at('EVERYDAY')).toBeLessThan(at('BROKER'))
    expect(at('BROKER')).toBeLessThan(at('SETUP'))
    expect(at('SETUP')).toBeLessThan(at('MORE'))
    const everyday = out.slice(at('EVERYDAY'), at('BROKER'))
    for (const name of ['run', 'warmup', 'ssh', 'stop', 'list', 'status']) expect(everyday).toMatch(new RegExp(`^\\s+${name}\\s`, 'm'))
    expect(out.slice(at('BROKER'), at('SETUP'))).toMatch(/^\s+login\s/m)
    expect(out.slice(at('SETUP'), at('MORE'))).toMatch(/^\s+config\s/m)
    const more = out.slice(at('MORE'), at('EXAMPLES'))
    for (const name of ['plugins', 'autocomplete']) expect(more).toMatch(new RegExp(`^\\s+${name}\\s`, 'm'))
    expect(out).toContain('$ crabbox run -- npm test')
    expect(out).toContain('docs/cli.md')
  })

  it("run's and ssh's usage show where the command goes", async () => {
    const run = await runCli(['run', '--help'], { home: home() })
    expect(run.stdout).toContain('$ crabbox run [FLAGS] -- <command…>')
    const ssh = await runCli(['ssh', '--help'], { home: home() })
    expect(ssh.stdout).toContain('$ crabbox ssh [LEASE] [FLAGS] [-- <command…>]')
  })
})

describe('crabbox config set, get and unset', () => {
  it('set writes one key 0600 to the user file, typed by the schema, keeping comments; get and unset read and remove it', async () => {
    const h = home()
    const set = await runCli(['config', 'set', 'ssh.key', '~/.ssh/id_ed25519'], { home: h })
    expect(set.code, set.stderr).toBe(0)
    expect(statSync(userFile(h)).mode & 0o777).toBe(0o600)
    expect(readFileSync(userFile(h), 'utf8')).toContain('ssh:\n  key: ~/.ssh/id_ed25519')
    expect((await runCli(['config', 'set', 'ssh.port', '2200'], { home: h })).code).toBe(0)
    expect((await runCli(['config', 'set', 'sync.exclude', 'dist,coverage'], { home: h })).code).toBe(0)
    expect((await runCli(['config', 'set', 'sync.delete', 'false'], { home: h })).code).toBe(0)

    const view = JSON.parse((await runCli(['config', 'show', '--json'], { home: h })).stdout)
    expect(view.config.ssh).toMatchObject({ key: '~/.ssh/id_ed25519', port: '2200' })
    expect(view.config.sync).toMatchObject({ exclude: ['dist', 'coverage'], delete: false })

    expect(await runCli(['config', 'get', 'ssh.key'], { home: h })).toMatchObject({ code: 0, stdout: '~/.ssh/id_ed25519\n' })
    const json = JSON.parse((await runCli(['config', 'get', 'ssh.port', '--json'], { home: h })).stdout)
    expect(json).toMatchObject({ key: 'ssh.port', value: '2200', source: userFile(h) })
    expect((await runCli(['config', 'get', 'provider'], { home: h })).stdout).toBe('local\n')

    expect((await runCli(['config', 'unset', 'ssh.key'], { home: h })).code).toBe(0)
    expect(readFileSync(userFile(h), 'utf8')).not.toContain('key:')
    expect((await runCli(['config', 'get', 'ssh.key'], { home: h })).stdout).toBe('')
  })

  it('an unknown key or a bad value is exit 2 and writes nothing', async () => {
    const h = home()
    const unknown = await runCli(['config', 'set', 'ssh.kye', 'x'], { home: h })
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain('unknown config key "ssh.kye"')
    expect(unknown.stderr).toContain('Did you mean ssh.key?')
    const section = await runCli(['config', 'set', 'ssh', 'x'], { home: h })
    expect(section.code).toBe(2)
    expect(section.stderr).toContain('ssh is a section, not a key')
    expect(section.stderr).toContain('ssh.user, ssh.key, ssh.port, ssh.fallbackPorts')
    const bad = await runCli(['config', 'set', 'ssh.port', 'twenty-two'], { home: h })
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('invalid value for ssh.port: expected a TCP port number')
    expect(existsSync(userFile(h))).toBe(false)
    expect((await runCli(['config', 'get', 'nope'], { home: h })).code).toBe(2)
  })

  it('--repo writes .crabbox.yaml at the git root, never a token, and leaves the root folder mode alone', async () => {
    const h = home()
    const repo = gitRepo()
    repos.push(repo)
    const rootMode = statSync(repo).mode & 0o777
    const sub = join(repo, 'sub')
    mkdirSync(sub)
    const set = await runCli(['config', 'set', 'class', 'fast', '--repo'], { home: h, cwd: sub })
    expect(set.code, set.stderr).toBe(0)
    expect(readFileSync(join(repo, '.crabbox.yaml'), 'utf8')).toBe('class: fast\n')
    expect(statSync(repo).mode & 0o777).toBe(rootMode)
    expect(existsSync(userFile(h))).toBe(false)
    const view = JSON.parse((await runCli(['config', 'show', '--json'], { home: h, cwd: sub })).stdout)
    expect(view.sources.class).toBe(join(repo, '.crabbox.yaml'))
    const token = await runCli(['config', 'set', 'broker.token', 'secret', '--repo'], { home: h, cwd: sub })
    expect(token.code).toBe(2)
    expect(readFileSync(join(repo, '.crabbox.yaml'), 'utf8')).not.toContain('secret')
  })
})

describe('lease lifecycle on the local provider', () => {
  it('ssh takes a positional lease; stop removes the lease key folder; stop --json names it in id', async () => {
    const h = runnerHome()
    const repo = gitRepo()
    repos.push(repo)
    const warm = await runCli(['warmup', '--json'], { home: h, cwd: repo, env: noAgent })
    expect(warm.code, warm.stderr).toBe(0)
    const lease = JSON.parse(warm.stdout)
    expect(keyFolders(h)).toContain(lease.id)

    const ssh = await runCli(['ssh', lease.slug, '--', 'echo', 'hi'], { home: h, cwd: repo, env: noAgent })
    expect(ssh).toMatchObject({ code: 0, stdout: 'hi\n' })

    // list: a header and relative expiry on a terminal; piped, one plain line per lease with the ISO time.
    const onTty = spawnSync('script', ['-qec', `${process.execPath} ${cliPath} list`, '/dev/null'], {
      cwd: repo,
      env: { ...process.env, ...h.env, ...noAgent, TERM: 'xterm' } as NodeJS.ProcessEnv,
      encoding: 'utf8',
      timeout: 60_000,
    }).stdout
    expect(onTty).toMatch(/^ID\s+SLUG\s+PROVIDER\s+SSH\s+STATE\s+EXPIRES\r?$/m)
    expect(onTty).toMatch(new RegExp(`^${lease.id}\\s+${lease.slug}\\s+local\\s+.*active \\(kept\\)\\s+in 1h \\d+m\\r?$`, 'm'))
    const piped = await runCli(['list'], { home: h, cwd: repo, env: noAgent })
    expect(piped.stdout).toMatch(
      new RegExp(`^${lease.id}  ${lease.slug}  local  \\S+  active  keep  expires=\\d{4}-\\d\\d-\\d\\dT\\S+Z\n$`),
    )

    const stop = await runCli(['stop', lease.slug, '--json'], { home: h, cwd: repo, env: noAgent })
    expect(stop.code, stop.stderr).toBe(0)
    expect(JSON.parse(stop.stdout)).toMatchObject({ id: lease.id, slug: lease.slug, released: true })
    expect(keyFolders(h)).toEqual([])
  })

  it('a finished run leaves no key folder; stop --all releases every lease this machine holds', async () => {
    const h = runnerHome()
    const repo = gitRepo()
    repos.push(repo)
    const run = await runCli(['run', '--', 'true'], { home: h, cwd: repo, env: noAgent })
    expect(run.code, run.stderr).toBe(0)
    expect(keyFolders(h)).toEqual([])

    const kept = []
    for (let i = 0; i < 2; i++) {
      const warm = await runCli(['warmup', '--json'], { home: h, cwd: repo, env: noAgent })
      expect(warm.code, warm.stderr).toBe(0)
      kept.push(JSON.parse(warm.stdout).id)
    }
    const all = await runCli(['stop', '--all', '--json'], { home: h, cwd: repo, env: noAgent })
    expect(all.code, all.stderr).toBe(0)
    expect(
      JSON.parse(all.stdout)
        .leases.map((l: { id: string }) => l.id)
        .sort(),
    ).toEqual(kept.sort())
    expect(JSON.parse((await runCli(['list', '--json'], { home: h, cwd: repo, env: noAgent })).stdout)).toEqual([])
    expect(keyFolders(h)).toEqual([])
    expect((await runCli(['stop', '--all', 'x'], { home: h, cwd: repo, env: noAgent })).code).toBe(2)
  })
})

describe('lease key folders with an existing SSH host', () => {
  it('a direct ssh-provider run leaves only the host-key pin folder, which survives the next claim', async () => {
    const host = await sshHost()
    try {
      const h = runnerHome()
      const repo = gitRepo()
      repos.push(repo)
      const env = { ...noAgent, CRABBOX_SSH_KEY: host.privateKeyPath, CRABBOX_WORK_ROOT: `${host.home}/work` }
      const args = ['run', '--provider', 'ssh', '--static-host', host.address, '--', 'true']
      const first = await runCli(args, { home: h, cwd: repo, env })
      expect(first.code, first.stderr).toBe(0)
      const folders = keyFolders(h)
      expect(folders).toHaveLength(1)
      expect(folders[0]).toMatch(/^static_/)
      const pin = join(h.env.XDG_CONFIG_HOME, 'crabbox', 'testboxes', folders[0], 'known_hosts')
      expect(readFileSync(pin, 'utf8')).toContain('ssh-ed25519')
      const second = await runCli(args, { home: h, cwd: repo, env })
      expect(second.code, second.stderr).toBe(0)
      expect(keyFolders(h)).toEqual(folders)
    } finally {
      await host.stop()
    }
  })
})

describe('broker onboarding', () => {
  it('broker dev without a token makes a dev token, and its ready lines say how to connect; 401s name the token source', async () => {
    const broker = await startBroker()
    try {
      const output = broker.readyOutput()
      const tokenFile = join(broker.stateDir, 'dev-token')
      expect(output).toContain(
        `warning: no CRABBOX_SHARED_TOKEN, CRABBOX_ADMIN_TOKEN or GitHub login set: clients use the dev token in ${tokenFile}`,
      )
      expect(statSync(tokenFile).mode & 0o777).toBe(0o600)
      const connect = /^connect this machine: (crabbox config set-broker .*)$/m.exec(output)?.[1]
      expect(connect).toBe(`crabbox config set-broker --url ${broker.url} --token-stdin < ${tokenFile}`)

      // The printed command, as a user would paste it.
      const h = home()
      execFileSync('sh', ['-c', connect!.replace(/^crabbox /, `"${process.execPath}" "${cliPath}" `)], {
        env: { ...process.env, ...h.env },
        stdio: 'pipe',
      })
      const who = await runCli(['whoami', '--json'], { home: h })
      expect(who.code, who.stderr).toBe(0)
      expect(JSON.parse(who.stdout).auth).toBe('bearer')

      const login = await runCli(['login', '--url', broker.url, '--no-browser'], { home: home() })
      expect(login.code).toBe(3)
      expect(login.stderr).toContain('has no GitHub login')
      expect(login.stderr).toContain(`crabbox login --url ${broker.url} --token-stdin`)

      const fromEnv = await runCli(['whoami'], { home: h, env: { CRABBOX_COORDINATOR_TOKEN: 'wrong' } })
      expect(fromEnv.code).toBe(3)
      expect(fromEnv.stderr).toContain('refused the broker token from the environment variable CRABBOX_COORDINATOR_TOKEN')
      const bad = home()
      put(join(bad.env.XDG_CONFIG_HOME, 'crabbox'), 'config.yaml', `broker:\n  url: ${broker.url}\n  token: wrong\n`)
      const fromFile = await runCli(['whoami'], { home: bad })
      expect(fromFile.code).toBe(3)
      expect(fromFile.stderr).toContain(`refused the broker token from the config file ${userFile(bad)}`)
    } finally {
      await broker.stop()
    }
  })

  it('broker dev with a token of its own prints the set-broker command that reads it from that variable', async () => {
    const broker = await startBroker({ env: { CRABBOX_SHARED_TOKEN: 'onboarding-token' } })
    try {
      expect(broker.readyOutput()).not.toContain('warning:')
      expect(broker.readyOutput()).toContain(
        `connect this machine: printf '%s\\n' "$CRABBOX_SHARED_TOKEN" | crabbox config set-broker --url ${broker.url} --token-stdin`,
      )
    } finally {
      await broker.stop()
    }
  })
})
