import { describe, expect, it } from 'vitest'
import { unsupportedTargetMessage } from '../../src/cloud/classes.js'
import { TARGET_PROVIDERS, whoCanRun } from '../../src/cloud/targets.js'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import { CrabboxError } from '../../src/errors.js'
import { checkDirectAsk } from '../../src/services/lease-request.js'

const refusal = (provider: string, config: Config): CrabboxError | undefined => {
  try {
    checkDirectAsk(provider, config)
  } catch (error) {
    expect(error).toBeInstanceOf(CrabboxError)
    return error as CrabboxError
  }
  return undefined
}

describe('a target its provider cannot run', () => {
  it('is refused with exit 2, naming the providers that can', () => {
    const windows = refusal('hetzner', { ...defaultConfig(), target: 'windows' })
    expect(windows).toBeUndefined() // cloud providers refuse the target themselves, before anything is made:
    expect(unsupportedTargetMessage('hetzner', 'windows', 'direct')).toBe(
      'Hetzner windows runners are not supported: crabbox makes no windows machines on Hetzner; providers that can run windows: aws, azure, ssh (an existing Windows host). Use --target linux.',
    )
    expect(unsupportedTargetMessage('azure', 'windows', 'direct')).toBeUndefined()
    expect(unsupportedTargetMessage('aws', 'windows', 'direct')).toBeUndefined()
    // The broker makes AWS and Azure Windows machines too.
    expect(unsupportedTargetMessage('aws', 'windows')).toBeUndefined()
    expect(unsupportedTargetMessage('azure', 'windows')).toBeUndefined()
    expect(unsupportedTargetMessage('hetzner', 'macos')).toBe(
      'Hetzner macos runners are not supported: crabbox makes no macos machines on Hetzner; providers that can run macos: ssh (an existing Mac), local (on a Mac), aws (mac2.metal on your dedicated host). Use --target linux (or the ssh provider for an existing Mac).',
    )
    expect(refusal('ssh', { ...defaultConfig(), target: 'macos' })).toBeUndefined()
    expect(refusal('ssh', { ...defaultConfig(), target: 'windows' })).toBeUndefined()
  })

  it('refuses Windows and macOS on the delegated providers, whose sandboxes are Linux', () => {
    for (const provider of ['e2b', 'daytona', 'islo', 'blacksmith-testbox']) {
      const refused = refusal(provider, { ...defaultConfig(), target: 'windows' })
      expect(refused?.exitCode).toBe(2)
      expect(refused?.message).toBe(
        `the ${provider} provider runs Linux sandboxes only; providers that can run windows: aws, azure, ssh (an existing Windows host)`,
      )
      expect(refusal(provider, { ...defaultConfig(), target: 'macos' })?.message).toContain('providers that can run macos')
    }
  })

  it('refuses on Windows what no Windows runner has, with the reason', () => {
    const config = { ...defaultConfig(), target: 'windows' as const }
    const desktop = refusal('aws', { ...config, desktop: true })
    expect(desktop?.exitCode).toBe(2)
    expect(desktop?.message).toBe(
      'crabbox does not install a Windows desktop yet: no VNC server is set up on Windows runners (desktop refused)',
    )
    expect(refusal('ssh', { ...config, windows: { mode: 'wsl2' }, browser: true })?.message).toBe(
      'a WSL2 runner has no desktop: WSL2 has no display of its own (browser refused)',
    )
    expect(refusal('aws', { ...config, code: true })?.message).toBe('crabbox installs no code-server on Windows runners (code refused)')
  })

  it('names the local provider only for the OS of the machine it runs on', () => {
    const other = process.platform === 'darwin' ? 'linux' : 'macos'
    expect(refusal('local', { ...defaultConfig(), target: other })?.message).toBe(
      `the local provider runs on this machine, which is not a ${other} machine; ${whoCanRun(other)}`,
    )
    expect(TARGET_PROVIDERS.windows).toEqual(['aws', 'azure', 'ssh (an existing Windows host)'])
    expect(whoCanRun('plan9')).toBe('no provider of this crabbox version makes plan9 runners yet')
  })
})
