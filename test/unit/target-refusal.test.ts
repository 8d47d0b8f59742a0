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
  it('is refused with exit 2, naming the providers that can (or that none can yet)', () => {
    const windows = refusal('ssh', { ...defaultConfig(), target: 'windows' })
    expect(windows?.exitCode).toBe(2)
    expect(windows?.message).toBe(
      'Windows hosts are not supported by the ssh provider yet; no provider of this crabbox version makes windows runners yet',
    )
    expect(unsupportedTargetMessage('aws', 'windows')).toBe(
      'AWS windows runners are not supported yet: crabbox bootstraps Linux machines only; no provider of this crabbox version makes windows runners yet. Use --target linux.',
    )
    expect(unsupportedTargetMessage('hetzner', 'macos')).toBe(
      'Hetzner macos runners are not supported yet: crabbox bootstraps Linux machines only; providers that can run macos: ssh (an existing Mac), local (on a Mac), aws (direct mode, mac2.metal on your dedicated host). Use --target linux (or the ssh provider for an existing Mac).',
    )
    expect(refusal('ssh', { ...defaultConfig(), target: 'macos' })).toBeUndefined()
  })

  it('names the local provider only for the OS of the machine it runs on', () => {
    const other = process.platform === 'darwin' ? 'linux' : 'macos'
    expect(refusal('local', { ...defaultConfig(), target: other })?.message).toBe(
      `the local provider runs on this machine, which is not a ${other} machine; ${whoCanRun(other)}`,
    )
    expect(TARGET_PROVIDERS.windows).toEqual([])
    expect(whoCanRun('plan9')).toBe('no provider of this crabbox version makes plan9 runners yet')
  })
})
