import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Errors } from '@oclif/core'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config/load.js'
import { CrabboxError } from '../../src/errors.js'
import { leaseFlags, parseChoice, parseProfile } from '../../src/flags.js'
import { checkDirectAsk, leaseAsk, missingCapabilities } from '../../src/services/lease-request.js'
import type { LeaseRecord } from '../../src/protocol/leases.js'

/**
 * The lease-creating flags (`run`, `warmup`) and the settings behind them: values
 * are checked while flags are parsed (exit 2 naming what is expected), config
 * keys and aliases merge as flags > env > files, and a lease request carries only
 * what someone set.
 */

let root: string
let repo: string
let env: NodeJS.ProcessEnv

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'crabbox-lease-flags-'))
  repo = join(root, 'repo')
  mkdirSync(repo, { recursive: true })
  execFileSync('git', ['init', '-q', repo])
  env = { HOME: join(root, 'home'), XDG_CONFIG_HOME: join(root, 'home', 'config'), PATH: process.env.PATH }
})
afterEach(() => rmSync(root, { recursive: true, force: true }))

const load = (flags: Record<string, unknown> = {}, extraEnv: NodeJS.ProcessEnv = {}) =>
  loadConfig({ cwd: repo, env: { ...env, ...extraEnv }, flags, warn: () => undefined })
const repoFile = (text: string) => writeFileSync(join(repo, '.crabbox.yaml'), text)

/** Runs a flag's own parser the way oclif does while parsing argv. */
async function parseFlag(name: keyof typeof leaseFlags, input: string): Promise<unknown> {
  const flag = leaseFlags[name] as unknown as { parse: (input: string, context: unknown, options: unknown) => Promise<unknown> }
  return flag.parse(input, {}, flag)
}

async function usageError(promise: Promise<unknown>): Promise<Errors.CLIError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(Errors.CLIError)
  expect((error as Errors.CLIError).oclif.exit).toBe(2)
  return error as Errors.CLIError
}

describe('lease flag values', () => {
  it('take the canonical name of a value or alias, whatever its case', async () => {
    expect(await parseFlag('market', 'On-Demand')).toBe('on-demand')
    expect(await parseFlag('network', 'public')).toBe('public')
    expect(await parseFlag('windows-mode', 'wsl')).toBe('wsl2')
    expect(await parseFlag('windows-mode', 'PowerShell')).toBe('normal')
    expect(await parseFlag('target', 'darwin')).toBe('macos')
    expect(await parseFlag('target', 'win')).toBe('windows')
    expect(await parseFlag('target', 'ubuntu')).toBe('linux')
    expect(await parseFlag('profile', ' ci-check ')).toBe('ci-check')
  })

  it('refuse anything else with exit 2 saying what is expected', async () => {
    for (const [flag, input, expected] of [
      ['market', 'cheap', 'spot or on-demand'],
      ['network', 'vpn', 'auto, tailscale or public'],
      ['windows-mode', 'dos', 'normal or wsl2'],
      ['target', 'plan9', 'linux, macos or windows'],
      ['profile', 'two words', 'a profile name'],
      ['profile', 'x'.repeat(65), '1 to 64 characters'],
    ] as const) {
      const error = await usageError(parseFlag(flag, input))
      expect(error.message).toContain(expected)
      expect(error.message).toContain(JSON.stringify(input))
    }
    expect(() => parseChoice('', { a: 'a' }, 'a')).toThrow(/expected a/)
    expect(() => parseProfile('')).toThrow(/profile name/)
  })
})

describe('lease settings in config', () => {
  it('reads target aliases, targetOS and the capability, network and windows keys from files', async () => {
    repoFile('targetOS: osx\ndesktop: true\nbrowser: true\ncode: false\nnetwork: public\nprofile: nightly\n')
    const { config } = await load()
    expect(config).toMatchObject({ target: 'macos', desktop: true, browser: true, code: false, network: 'public', profile: 'nightly' })
    repoFile('target: Win\nwindows:\n  mode: wsl\n')
    expect((await load()).config).toMatchObject({ target: 'windows', windows: { mode: 'wsl2' } })
  })

  it('merges flags over env over files', async () => {
    repoFile('target: linux\nnetwork: public\ndesktop: true\ncapacity:\n  market: spot\nprofile: from-file\n')
    let { config } = await load(
      {},
      { CRABBOX_NETWORK: 'auto', CRABBOX_DESKTOP: 'false', CRABBOX_CAPACITY_MARKET: 'on-demand', CRABBOX_PROFILE: 'from-env' },
    )
    expect(config).toMatchObject({ network: 'auto', desktop: false, capacity: { market: 'on-demand' }, profile: 'from-env' })
    expect(config.sources).toMatchObject({ network: 'env CRABBOX_NETWORK', desktop: 'env CRABBOX_DESKTOP' })
    ;({ config } = await load(
      {
        network: 'public',
        desktop: true,
        market: 'spot',
        profile: 'from-flag',
        windowsMode: 'wsl2',
        target: 'windows',
        staticWorkRoot: '/srv/w',
      },
      { CRABBOX_NETWORK: 'auto', CRABBOX_TARGET: 'linux' },
    ))
    expect(config).toMatchObject({
      network: 'public',
      desktop: true,
      capacity: { market: 'spot' },
      profile: 'from-flag',
      target: 'windows',
      windows: { mode: 'wsl2' },
      static: { workRoot: '/srv/w' },
    })
    expect(config.sources.network).toBe('flag --network')
  })

  it('refuses bad values and a WSL2 mode without the windows target, naming where they came from', async () => {
    repoFile('network: vpn\n')
    expect((await load().catch((e: unknown) => e)) as CrabboxError).toMatchObject({ exitCode: 2 })
    repoFile('target: beos\n')
    expect(((await load().catch((e: unknown) => e)) as CrabboxError).message).toContain('linux, macos or windows')
    repoFile('')
    const env = (await load({}, { CRABBOX_WINDOWS_MODE: 'wsl2' }).catch((e: unknown) => e)) as CrabboxError
    expect(env).toBeInstanceOf(CrabboxError)
    expect(env.exitCode).toBe(2)
    expect(env.message).toContain('env CRABBOX_WINDOWS_MODE')
    expect(((await load({}, { CRABBOX_DESKTOP: 'maybe' }).catch((e: unknown) => e)) as CrabboxError).message).toContain('CRABBOX_DESKTOP')
  })
})

describe('the broker lease request', () => {
  it('carries only the placement settings someone set', async () => {
    const { config } = await load()
    expect(leaseAsk(config, undefined)).toEqual({ target: 'linux', profile: 'default', class: 'beast' })
  })

  it('sends every placement setting, with provider sections only to that provider or the broker choice', async () => {
    repoFile(
      [
        'hetzner:\n  location: nbg1\n  image: debian-12',
        'aws:\n  region: eu-west-2\n  ami: ami-0123456789abcdef0\n  rootGB: 100',
        'capacity:\n  fallback: none\n  regions: [eu-west-2]\n  hints: false',
        'ssh:\n  user: builder\n  port: 2200\n  fallbackPorts: []',
        'serverType: cpx62',
      ].join('\n') + '\n',
    )
    const { config } = await load({ market: 'on-demand', workRoot: '/srv/ci', desktop: true, network: 'public', profile: 'ci' })
    const common = {
      target: 'linux',
      profile: 'ci',
      class: 'beast',
      serverType: 'cpx62',
      serverTypeExplicit: true,
      desktop: true,
      network: 'public',
      capacity: { market: 'on-demand', fallback: 'none', regions: ['eu-west-2'], hints: false },
      sshUser: 'builder',
      sshPort: '2200',
      sshFallbackPorts: [],
      workRoot: '/srv/ci',
    }
    const hetzner = { location: 'nbg1', image: 'debian-12' }
    const aws = { awsRegion: 'eu-west-2', awsAMI: 'ami-0123456789abcdef0', awsRootGB: 100 }
    expect(leaseAsk(config, undefined)).toEqual({ ...common, ...hetzner, ...aws })
    expect(leaseAsk(config, 'hetzner')).toEqual({ ...common, ...hetzner })
    expect(leaseAsk(config, 'aws')).toEqual({ ...common, ...aws })
    expect(leaseAsk(config, 'static')).toEqual(common)
  })

  it('sends the static work root to the static pool, and windowsMode only with the windows target', async () => {
    const { config } = await load({ staticWorkRoot: '/srv/static', workRoot: '/srv/other' })
    expect(leaseAsk(config, 'static').workRoot).toBe('/srv/static')
    expect(leaseAsk(config, 'hetzner').workRoot).toBe('/srv/other')
    expect(leaseAsk((await load({ target: 'windows', windowsMode: 'wsl2' })).config, undefined)).toMatchObject({
      target: 'windows',
      windowsMode: 'wsl2',
    })
  })
  it('sends the dedicated host (aws.macHostId) to AWS or the broker choice, and only with the macos target', async () => {
    const { config } = await load({ target: 'macos' })
    config.aws.macHostId = 'h-0123456789abcdef0'
    expect(leaseAsk(config, 'aws')).toMatchObject({ target: 'macos', awsMacHostID: 'h-0123456789abcdef0' })
    expect(leaseAsk(config, undefined).awsMacHostID).toBe('h-0123456789abcdef0')
    expect(leaseAsk(config, 'hetzner').awsMacHostID).toBeUndefined()
    expect(leaseAsk({ ...config, target: 'linux' }, 'aws').awsMacHostID).toBeUndefined()
  })
})

describe('a granted lease', () => {
  it('lacks a capability that was asked for when the broker did not record it (an older broker may ignore the ask)', async () => {
    const { config } = await load({ desktop: true, code: true })
    const lease = { desktop: true, browser: false } as LeaseRecord
    expect(missingCapabilities(config, lease)).toEqual(['code'])
    expect(missingCapabilities((await load()).config, lease)).toEqual([])
  })
})

describe('direct providers refuse what they cannot give', () => {
  const refusal = (provider: string, config: Parameters<typeof checkDirectAsk>[1]) => {
    try {
      checkDirectAsk(provider, config)
    } catch (error) {
      expect(error).toBeInstanceOf(CrabboxError)
      expect((error as CrabboxError).exitCode).toBe(2)
      return (error as CrabboxError).message
    }
    return undefined
  }

  it('names the capability, network, target or market', async () => {
    // The local provider and an undeclared static host cannot have them; cloud machines get them installed.
    for (const provider of ['local', 'ssh'])
      for (const capability of ['desktop', 'browser', 'code'])
        expect(refusal(provider, (await load({ [capability]: true })).config)).toMatch(
          capability === 'code' ? /code-server/ : new RegExp(capability),
        )
    for (const provider of ['hetzner', 'aws'])
      for (const capability of ['desktop', 'browser', 'code'])
        expect(refusal(provider, (await load({ [capability]: true })).config)).toBeUndefined()
    // A static host whose operator declared the capability takes it; the refusal says how to declare it.
    expect(refusal('ssh', (await load({ desktop: true })).config)).toMatch(/static host/)
    expect(refusal('ssh', (await load({ desktop: true }, { CRABBOX_STATIC_DESKTOP: '1' })).config)).toBeUndefined()
    expect(refusal('ssh', (await load({ desktop: true, code: true }, { CRABBOX_STATIC_DESKTOP: '1' })).config)).toMatch(/code-server/)
    expect(refusal('ssh', (await load({ network: 'tailscale' })).config)).toMatch(/tailscale/)
    // An existing Windows host is an ssh target now; what no Windows runner has is refused with the reason.
    expect(refusal('ssh', (await load({ target: 'windows' })).config)).toBeUndefined()
    expect(refusal('ssh', (await load({ target: 'windows', desktop: true })).config)).toMatch(/Windows desktop/)
    expect(refusal('hetzner', (await load({ market: 'spot' })).config)).toMatch(/spot/)
    expect(refusal('aws', (await load({}, { CRABBOX_CAPACITY_AVAILABILITY_ZONES: 'eu-west-1a' })).config)).toMatch(/availabilityZones/)
    expect(refusal('ssh', (await load({ market: 'on-demand' })).config)).toMatch(/capacity\.market: the ssh provider/)
    expect(refusal('hetzner', (await load({}, { CRABBOX_CAPACITY_REGIONS: 'eu-west-2' })).config)).toMatch(/capacity\.regions/)
    expect(refusal('aws', (await load({}, { CRABBOX_CAPACITY_STRATEGY: 'cheapest' })).config)).toMatch(/capacity\.strategy/)
    expect(refusal('aws', (await load({}, { CRABBOX_CAPACITY_HINTS: 'true' })).config)).toMatch(/capacity\.hints/)
    // What they can give passes: the default market on Hetzner, public networking, no capabilities, no hints, AWS regions.
    expect(refusal('hetzner', (await load({ market: 'on-demand' }, { CRABBOX_CAPACITY_HINTS: '0' })).config)).toBeUndefined()
    expect(
      refusal('aws', (await load({}, { CRABBOX_CAPACITY_REGIONS: 'eu-west-2', CRABBOX_CAPACITY_FALLBACK: 'none' })).config),
    ).toBeUndefined()
    expect(refusal('hetzner', (await load({ network: 'public' })).config)).toBeUndefined()
    expect(refusal('aws', (await load({ market: 'spot', profile: 'ci' })).config)).toBeUndefined()
  })
})
