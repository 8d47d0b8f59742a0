import { describe, expect, it } from 'vitest'
import {
  candidateTypes,
  eurToUsdRate,
  explicitType,
  fallbackHourlyUSD,
  rateOverride,
  unsupportedTargetMessage,
} from '../../src/cloud/classes.js'
import { cleanupDecision, labelValue, machineLabels, machineName, type CloudMachine } from '../../src/cloud/cloud-machines.js'

describe('classes and prices', () => {
  it('maps each class to the reference candidate order per provider', () => {
    expect(candidateTypes('hetzner', 'standard')).toEqual(['ccx33', 'cpx62', 'cx53'])
    expect(candidateTypes('hetzner', 'beast')).toEqual(['ccx63', 'ccx53', 'ccx43', 'cpx62', 'cx53'])
    expect(candidateTypes('aws', 'fast')).toEqual([
      'c7a.16xlarge',
      'c7i.16xlarge',
      'm7a.16xlarge',
      'm7i.16xlarge',
      'c7a.12xlarge',
      'c7a.8xlarge',
    ])
    expect(candidateTypes('aws', 'beast')).toHaveLength(10)
  })

  it('an explicit type is tried alone; an unknown class is a literal type; a class name in the type slot is not explicit', () => {
    expect(candidateTypes('hetzner', 'standard', 'cx22')).toEqual(['cx22'])
    expect(candidateTypes('aws', 't3.small')).toEqual(['t3.small'])
    expect(explicitType('beast', 'beast')).toBeUndefined()
    expect(explicitType('standard', 'large')).toBeUndefined()
    expect(explicitType('standard', 'cpx62')).toBe('cpx62')
  })

  it('static prices: per type, a class plans for its dearest candidate, unknown types err high on AWS', () => {
    expect(fallbackHourlyUSD('hetzner', 'ccx43')).toBe(0.54)
    expect(fallbackHourlyUSD('hetzner', 'beast')).toBe(1.08)
    expect(fallbackHourlyUSD('aws', 'standard')).toBe(3.0)
    expect(fallbackHourlyUSD('aws', 'x9.mega')).toBe(3.0)
    expect(eurToUsdRate(undefined)).toBe(1.08)
    expect(eurToUsdRate('1.2')).toBe(1.2)
    expect(eurToUsdRate('nope')).toBe(1.08)
    expect(rateOverride('{"hetzner:cx53":0.05}', 'hetzner', 'cx53')).toBe(0.05)
    expect(rateOverride('not json', 'hetzner', 'cx53')).toBeUndefined()
  })

  it('refuses Windows and macOS with a message naming the alternative', () => {
    expect(unsupportedTargetMessage('aws', 'linux')).toBeUndefined()
    expect(unsupportedTargetMessage('hetzner', 'windows')).toMatch(
      /Hetzner windows runners are not supported: crabbox makes no windows machines on Hetzner.*--target linux/,
    )
    // AWS and Azure make Windows runners in direct mode and through the broker.
    expect(unsupportedTargetMessage('aws', 'windows')).toBeUndefined()
    expect(unsupportedTargetMessage('aws', 'windows', 'direct')).toBeUndefined()
    expect(unsupportedTargetMessage('azure', 'windows')).toBeUndefined()
    expect(unsupportedTargetMessage('hetzner', 'windows', 'direct')).toMatch(/providers that can run windows: aws, azure, ssh/)
    // AWS makes macOS runners on a dedicated host (checked further by the broker and direct mode); nobody else does.
    expect(unsupportedTargetMessage('aws', 'macos')).toBeUndefined()
    expect(unsupportedTargetMessage('azure', 'macos')).toMatch(/providers that can run macos: .*aws \(mac2\.metal/)
  })
})

describe('machine labels and cleanup decisions', () => {
  const now = new Date('2026-03-01T12:00:00Z')
  const machine = (labels: Record<string, string>, status = 'off'): CloudMachine => ({
    provider: 'hetzner',
    id: '1',
    name: 'x',
    status,
    serverType: 'cx53',
    labels,
  })
  const base = machineLabels({
    provider: 'hetzner',
    leaseId: 'cbx_0123456789ab',
    slug: 'blue-crab',
    owner: 'Peter <p@example.com>',
    org: 'openclaw',
    profile: 'default',
    class: 'standard',
    serverType: 'ccx33',
    target: 'linux',
    keep: false,
    providerKey: 'crabbox-cbx-0123456789ab',
    ttlSeconds: 5400,
    idleTimeoutSeconds: 1800,
    createdAt: new Date('2026-03-01T10:00:00Z'),
  })

  it('labels are provider-safe and carry expiry as created + min(ttl, idle)', () => {
    expect(base.owner).toBe('Peter__p_example.com')
    expect(base.expires_at).toBe(String(Date.parse('2026-03-01T10:30:00Z') / 1000))
    expect(labelValue('__')).toBe('unknown')
    expect(labelValue('x'.repeat(80))).toHaveLength(63)
    expect(machineName('cbx_0123456789ab', 'a'.repeat(80)).length).toBeLessThanOrEqual(63)
  })

  it('labels the capabilities a machine was bootstrapped with, and only those', () => {
    expect(base).not.toHaveProperty('desktop')
    const labelled = machineLabels({
      provider: 'hetzner',
      leaseId: 'cbx_0123456789ab',
      slug: 'blue-crab',
      owner: 'o',
      org: 'g',
      profile: 'default',
      class: 'standard',
      serverType: 'ccx33',
      target: 'linux',
      keep: false,
      providerKey: 'k',
      ttlSeconds: 60,
      idleTimeoutSeconds: 60,
      createdAt: new Date(),
      desktop: true,
      code: true,
    })
    expect(labelled).toMatchObject({ desktop: 'true', code: 'true' })
    expect(labelled).not.toHaveProperty('browser')
  })

  it('deletes only what the labels prove is expired and unkept, with a safety window for running machines', () => {
    expect(cleanupDecision(machine(base), now).delete).toBe(true)
    expect(cleanupDecision(machine({ ...base, keep: 'true' }), now)).toMatchObject({ delete: false, reason: 'kept (keep=true)' })
    const { keep: _keep, ...noKeep } = base
    expect(cleanupDecision(machine(noKeep), now).delete).toBe(false)
    const { created_by: _by, ...foreign } = base
    expect(cleanupDecision(machine(foreign), now).delete).toBe(false)
    expect(cleanupDecision(machine({ ...base, expires_at: String(now.getTime() / 1000 + 60) }), now).delete).toBe(false)
    const justExpired = { ...base, expires_at: String(now.getTime() / 1000 - 600) }
    expect(cleanupDecision(machine(justExpired, 'running'), now).delete).toBe(false)
    expect(cleanupDecision(machine(justExpired, 'off'), now).delete).toBe(true)
    expect(cleanupDecision(machine(base, 'running'), now).delete).toBe(true)
  })
})
