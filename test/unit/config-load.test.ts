import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config/load.js'
import { setUserConfigValues, updateUserConfig } from '../../src/config/write.js'
import { CrabboxError } from '../../src/errors.js'
import { userConfigLocation } from '../../src/paths.js'

let root: string
let home: string
let repo: string
let env: NodeJS.ProcessEnv
const warnings: string[] = []

const userFile = () => join(home, 'config', 'crabbox', 'config.yaml')
const write = (path: string, text: string) => {
  mkdirSync(join(path, '..'), { recursive: true })
  writeFileSync(path, text)
}
const load = (options: { cwd?: string; flags?: Record<string, unknown>; extraEnv?: NodeJS.ProcessEnv } = {}) =>
  loadConfig({ cwd: options.cwd ?? repo, env: { ...env, ...options.extraEnv }, flags: options.flags, warn: (m) => warnings.push(m) })
const failure = async (promise: Promise<unknown>) => {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(CrabboxError)
  return error as CrabboxError
}

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'crabbox-config-'))
  home = join(root, 'home')
  repo = join(root, 'repo')
  mkdirSync(join(repo, 'pkg', 'deep'), { recursive: true })
  execFileSync('git', ['init', '-q', repo])
  env = { HOME: home, XDG_CONFIG_HOME: join(home, 'config'), PATH: process.env.PATH }
  warnings.length = 0
})
afterEach(() => rmSync(root, { recursive: true, force: true }))

describe('loadConfig precedence', () => {
  it('defaults < user file < repo file at the git root < env < flags', async () => {
    const sub = join(repo, 'pkg', 'deep')
    let { config } = await load({ cwd: sub })
    expect(config.ttl).toBe('90m')
    expect(config.class).toBe('beast')

    write(userFile(), 'ttl: 10m\nclass: standard\nworkRoot: /user\nsync:\n  timeout: 1m\n')
    ;({ config } = await load({ cwd: sub }))
    expect(config).toMatchObject({ ttl: '10m', class: 'standard', workRoot: '/user' })
    expect(config.sources.ttl).toBe(userFile())

    write(join(repo, '.crabbox.yaml'), 'ttl: 20m\nclass: fast\n')
    ;({ config } = await load({ cwd: sub }))
    expect(config).toMatchObject({ ttl: '20m', class: 'fast', workRoot: '/user' })
    expect(config.sources.ttl).toBe(join(repo, '.crabbox.yaml'))

    ;({ config } = await load({ cwd: sub, extraEnv: { CRABBOX_TTL: '30m', CRABBOX_DEFAULT_CLASS: 'large' } }))
    expect(config).toMatchObject({ ttl: '30m', class: 'large', workRoot: '/user' })
    expect(config.sources.ttl).toBe('env CRABBOX_TTL')

    ;({ config } = await load({ cwd: sub, extraEnv: { CRABBOX_TTL: '30m' }, flags: { ttl: '40m', json: true, id: 'x' } }))
    expect(config.ttl).toBe('40m')
    expect(config.class).toBe('fast')
    expect(config.sources.ttl).toBe('flag --ttl')
    expect(config.sync.timeout).toBe('1m')
  })

  it('.crabbox.yaml wins over crabbox.yaml and both are read from the git root', async () => {
    write(join(repo, 'crabbox.yaml'), 'class: standard\nworkRoot: /plain\n')
    write(join(repo, '.crabbox.yaml'), 'class: fast\n')
    write(join(repo, 'pkg', '.crabbox.yaml'), 'class: ignored\n')
    const { config, files, repoRoot } = await load({ cwd: join(repo, 'pkg') })
    expect(config.class).toBe('fast')
    expect(config.workRoot).toBe('/plain')
    expect(files).toEqual([join(repo, 'crabbox.yaml'), join(repo, '.crabbox.yaml')])
    expect(repoRoot).toBe(repo)
  })

  it('outside git the repo file is read from the cwd', async () => {
    const plain = join(root, 'plain')
    write(join(plain, '.crabbox.yaml'), 'class: standard\n')
    expect((await load({ cwd: plain })).config.class).toBe('standard')
  })

  it('in a git worktree (where .git is a file) the repo file is read from the worktree root', async () => {
    execFileSync('git', ['-C', repo, '-c', 'user.email=t@example.com', '-c', 'user.name=t', 'commit', '-q', '--allow-empty', '-m', 'init'])
    const tree = join(root, 'tree')
    execFileSync('git', ['-C', repo, 'worktree', 'add', '-q', tree])
    write(join(tree, '.crabbox.yaml'), 'class: standard\n')
    mkdirSync(join(tree, 'sub'))
    const { config, repoRoot } = await load({ cwd: join(tree, 'sub') })
    expect(config.class).toBe('standard')
    expect(repoRoot).toBe(tree)
  })

  it('CRABBOX_CONFIG replaces the user file', async () => {
    write(userFile(), 'class: standard\n')
    const other = join(root, 'other.yaml')
    write(other, 'workRoot: /other\n')
    const { config, files } = await load({ extraEnv: { CRABBOX_CONFIG: other } })
    expect(config.class).toBe('beast')
    expect(config.workRoot).toBe('/other')
    expect(files).toEqual([other])
  })

  it('CRABBOX_CONFIG replaces every config file, the repo files too', async () => {
    write(userFile(), 'class: standard\n')
    write(join(repo, '.crabbox.yaml'), 'class: fast\nttl: 20m\n')
    write(join(repo, 'crabbox.yaml'), 'workRoot: /repo\n')
    const other = join(root, 'other.yaml')
    write(other, 'ttl: 5m\n')
    const { config, files, userConfigPath, userConfigSource } = await load({ extraEnv: { CRABBOX_CONFIG: other } })
    expect(files).toEqual([other])
    expect(config).toMatchObject({ class: 'beast', ttl: '5m', workRoot: '/work/crabbox' })
    expect(userConfigPath).toBe(other)
    expect(userConfigSource).toBe('CRABBOX_CONFIG')
  })

  it('macOS: the user config is in ~/Library/Application Support/crabbox; ~/.config/crabbox is read too', async () => {
    const mac = join(home, 'Library', 'Application Support', 'crabbox', 'config.yaml')
    const xdg = join(home, '.config', 'crabbox', 'config.yaml')
    const macEnv = { HOME: home, PATH: process.env.PATH }
    const loadOn = (platform: NodeJS.Platform) =>
      loadConfig({ cwd: repo, env: macEnv, platform: { platform }, warn: (m) => warnings.push(m) })
    // Nothing yet: the macOS folder is the one crabbox writes.
    expect(userConfigLocation(macEnv, { platform: 'darwin' })).toEqual({ path: mac, source: 'macos' })
    expect(userConfigLocation(macEnv, { platform: 'linux' })).toEqual({ path: xdg, source: 'xdg' })
    // Only ~/.config/crabbox (a setup from before): that file is used, read and written.
    write(xdg, 'class: standard\nttl: 10m\n')
    let loaded = await loadOn('darwin')
    expect(loaded.files).toEqual([xdg])
    expect(loaded).toMatchObject({ userConfigPath: xdg, userConfigSource: 'macos-xdg' })
    expect(loaded.config.class).toBe('standard')
    // Both: ~/.config first, the macOS file over it.
    write(mac, 'class: fast\n')
    loaded = await loadOn('darwin')
    expect(loaded.files).toEqual([xdg, mac])
    expect(loaded).toMatchObject({ userConfigPath: mac, userConfigSource: 'macos' })
    expect(loaded.config).toMatchObject({ class: 'fast', ttl: '10m' })
    expect(userConfigLocation(macEnv, { platform: 'darwin' })).toEqual({ path: mac, source: 'macos', alsoRead: xdg })
    // Linux never reads the macOS folder.
    loaded = await loadOn('linux')
    expect(loaded.files).toEqual([xdg])
    expect(loaded.config.class).toBe('standard')
    // The platform's file checks can be injected too.
    expect(userConfigLocation(macEnv, { platform: 'darwin', exists: () => false })).toEqual({ path: mac, source: 'macos' })
  })

  it('sync.exclude appends across layers; other lists replace', async () => {
    write(userFile(), 'sync:\n  exclude: [dist]\nenv:\n  allow: [A]\n')
    write(join(repo, '.crabbox.yaml'), 'sync:\n  exclude: [coverage]\n  excludes: [tmp]\nenv:\n  allow: [B]\n')
    const { config } = await load({ extraEnv: { CRABBOX_SYNC_EXCLUDE: 'out, logs' } })
    expect(config.sync.exclude).toEqual(['dist', 'coverage', 'tmp', 'out', 'logs'])
    expect(config.env.allow).toEqual(['B'])
  })
})

describe('loadConfig values', () => {
  it('reads env booleans, numbers, csv and `none` fallback ports', async () => {
    const { config } = await load({
      extraEnv: {
        CRABBOX_SYNC_CHECKSUM: 'yes',
        CRABBOX_SYNC_DELETE: 'off',
        CRABBOX_SYNC_WARN_FILES: '12',
        CRABBOX_SSH_FALLBACK_PORTS: 'none',
        CRABBOX_SSH_PORT: '2022',
        CRABBOX_CAPACITY_REGIONS: 'eu-west-1,us-east-1',
        CRABBOX_ADMIN_TOKEN: 'adm',
        CRABBOX_STATIC_HOST: 'box.test',
      },
    })
    expect(config.sync).toMatchObject({ checksum: true, delete: false, warnFiles: 12 })
    expect(config.ssh).toMatchObject({ port: '2022', fallbackPorts: [] })
    expect(config.capacity.regions).toEqual(['eu-west-1', 'us-east-1'])
    expect(config.broker.adminToken).toBe('adm')
    expect(config.static.host).toBe('box.test')
  })

  it('maps legacy coordinator keys; broker.* in the same file wins', async () => {
    write(userFile(), 'coordinator: https://old.test\ncoordinatorToken: old\nbroker:\n  token: new\n')
    const { config } = await load()
    expect(config.broker).toEqual({ url: 'https://old.test', token: 'new' })
  })

  it('reads broker.access from files and CRABBOX_ACCESS_* / CF_ACCESS_* env, key by key, CRABBOX_ names first', async () => {
    write(userFile(), 'broker:\n  url: https://b.test\n  access:\n    clientId: file-id\n    clientSecret: file-secret\n')
    expect((await load()).config.broker.access).toEqual({ clientId: 'file-id', clientSecret: 'file-secret' })
    const { config } = await load({
      extraEnv: { CF_ACCESS_CLIENT_SECRET: 'cf-secret', CF_ACCESS_TOKEN: 'cf-token', CRABBOX_ACCESS_TOKEN: 'crabbox-token' },
    })
    expect(config.broker.access).toEqual({ clientId: 'file-id', clientSecret: 'cf-secret', token: 'crabbox-token' })
    expect(config.sources['broker.access.clientSecret']).toBe('env CF_ACCESS_CLIENT_SECRET')
    const bare = await load({ extraEnv: { CF_ACCESS_CLIENT_ID: 'cf-id', CRABBOX_ACCESS_CLIENT_ID: 'crabbox-id' }, cwd: root })
    expect(bare.config.broker.access?.clientId).toBe('crabbox-id')
  })

  it('provider: local with nothing configured, the broker chooses with a broker, explicit wins', async () => {
    expect((await load()).config.provider).toBe('local')
    expect((await load({ extraEnv: { CRABBOX_COORDINATOR: 'https://b.test' } })).config.provider).toBe('broker')
    write(userFile(), 'broker:\n  url: https://b.test\n  provider: aws\n')
    expect((await load()).config.provider).toBe('aws')
    expect((await load({ flags: { provider: 'ssh' } })).config.provider).toBe('ssh')
    expect((await load({ extraEnv: { CRABBOX_PROVIDER: 'static' } })).config.provider).toBe('ssh')
  })

  it('maps kebab and camel flag names, including --type to serverType', async () => {
    const { config } = await load({ flags: { 'idle-timeout': '5m', type: 'cx22', staticHost: 'h', 'static-port': 2200 } })
    expect(config).toMatchObject({ idleTimeout: '5m', serverType: 'cx22', static: { host: 'h', port: '2200' } })
  })
})

describe('loadConfig errors', () => {
  it('bad YAML is exit 2 naming the file and line', async () => {
    write(userFile(), 'class: fast\nsync:\n  exclude: [a\nttl: 5m\n')
    const error = await failure(load())
    expect(error.exitCode).toBe(2)
    expect(error.message).toContain(userFile())
    expect(error.message).toMatch(/line [34]/)
  })

  it('an invalid value is exit 2 naming file, line and what was expected', async () => {
    write(join(repo, '.crabbox.yaml'), '# repo\nclass: fast\nsync:\n  delete: true\n  timeout: soon\n')
    const error = await failure(load())
    expect(error.exitCode).toBe(2)
    expect(error.message).toContain(`${join(repo, '.crabbox.yaml')} line 5`)
    expect(error.message).toContain('sync.timeout')
    expect(error.message).toContain('expected a duration like 30s, 15m or 2h')
  })

  it('an unknown key is a warning naming key and file, and the rest still loads', async () => {
    write(userFile(), 'class: fast\ntype: cx22\nsync:\n  exclud: [x]\n')
    const { config } = await load()
    expect(config.class).toBe('fast')
    expect(warnings).toHaveLength(2)
    const text = warnings.join('\n')
    expect(text).toContain(`unknown config key type in ${userFile()} line 2`)
    expect(text).toContain(`unknown config key sync.exclud in ${userFile()} line 4`)
  })

  it('an invalid env value is exit 2 naming the variable', async () => {
    let error = await failure(load({ extraEnv: { CRABBOX_SYNC_CHECKSUM: 'maybe' } }))
    expect(error.exitCode).toBe(2)
    expect(error.message).toContain('CRABBOX_SYNC_CHECKSUM')
    error = await failure(load({ extraEnv: { CRABBOX_TTL: 'forever' } }))
    expect(error.message).toContain('CRABBOX_TTL')
    error = await failure(load({ extraEnv: { CRABBOX_TARGET: 'bsd' } }))
    expect(error.message).toMatch(/CRABBOX_TARGET.*linux, macos or windows/)
  })

  it('an invalid flag value is exit 2 naming the flag', async () => {
    const error = await failure(load({ flags: { target: 'bsd' } }))
    expect(error.exitCode).toBe(2)
    expect(error.message).toContain('--target')
  })
})

describe('writing the user config', () => {
  it('writes 0600 in a 0700 folder and keeps other keys and comments', async () => {
    write(userFile(), '# mine\nclass: fast # keep\n')
    const path = await setUserConfigValues({ 'broker.url': 'https://b.test', 'broker.token': 'tok' }, userFile())
    expect(statSync(path).mode & 0o777).toBe(0o600)
    expect(statSync(join(path, '..')).mode & 0o777).toBe(0o700)
    const text = readFileSync(path, 'utf8')
    expect(text).toContain('# mine')
    expect(text).toContain('class: fast # keep')
    const { config } = await load()
    expect(config.broker).toEqual({ url: 'https://b.test', token: 'tok' })

    await setUserConfigValues({ 'broker.token': undefined, 'broker.url': undefined }, userFile())
    expect(readFileSync(path, 'utf8')).not.toContain('broker')
  })

  it('creates a missing file and refuses to rewrite a broken one', async () => {
    const fresh = join(root, 'x', 'y', 'config.yaml')
    await setUserConfigValues({ 'broker.url': 'https://b.test' }, fresh)
    expect(readFileSync(fresh, 'utf8')).toBe('broker:\n  url: https://b.test\n')
    expect(statSync(join(fresh, '..')).mode & 0o777).toBe(0o700)
    write(fresh, 'a: [\n')
    const error = await failure(updateUserConfig(() => undefined, fresh))
    expect(error.exitCode).toBe(2)
    expect(readFileSync(fresh, 'utf8')).toBe('a: [\n')
  })
})
