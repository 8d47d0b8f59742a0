import { describe, expect, it } from 'vitest'
import { launchCommand } from '../../src/services/desktop/launch.js'
import { firstEnd } from '../../src/services/egress/index.js'
import { egressSocketUrl } from '../../src/services/egress/link.js'
import { allowed, allowList, EGRESS_PROFILES, loopbackListen, parseHostPort } from '../../src/services/egress/rules.js'

describe('egress allow-lists', () => {
  it('matches exact hosts, and *.x as x and every subdomain, case and trailing dot ignored', () => {
    const list = allowList(undefined, 'example.com, *.Example.NET')
    expect(list).toEqual(['example.com', '*.example.net'])
    expect(allowed('example.com', list)).toBe(true)
    expect(allowed('EXAMPLE.com.', list)).toBe(true)
    expect(allowed('www.example.com', list)).toBe(false)
    expect(allowed('example.net', list)).toBe(true)
    expect(allowed('a.b.example.net', list)).toBe(true)
    expect(allowed('badexample.net', list)).toBe(false)
    expect(allowed('example.net.evil.com', list)).toBe(false)
  })

  it('expands the built-in profiles and adds --allow on top, deduplicated', () => {
    expect(allowList('discord', undefined)).toEqual([...EGRESS_PROFILES.discord!])
    const slack = allowList('slack', 'slack.com,extra.test')
    expect(slack).toContain('*.slack-edge.com')
    expect(slack.filter((h) => h === 'slack.com')).toHaveLength(1)
    expect(slack.at(-1)).toBe('extra.test')
    expect(allowed('files.slack.com', slack)).toBe(true)
  })

  it('refuses an open proxy: no list, a bare *, an unknown profile, or a malformed entry', () => {
    expect(() => allowList(undefined, undefined)).toThrow('egress needs --profile or --allow')
    expect(() => allowList(undefined, ' , ')).toThrow('egress needs --profile or --allow')
    expect(() => allowList(undefined, '*')).toThrow('open proxy')
    expect(() => allowList('teams', undefined)).toThrow('unknown egress profile teams; known: discord, slack')
    expect(() => allowList(undefined, 'http://example.com')).toThrow('not a host name or *.host wildcard: http://example.com')
    expect(() => allowList(undefined, 'a.*.example.com')).toThrow('not a host name')
  })
})

describe('egress addresses', () => {
  it('parses CONNECT host:port, IPv6 in brackets', () => {
    expect(parseHostPort('example.com:443')).toEqual({ host: 'example.com', port: 443 })
    expect(parseHostPort('[::1]:8443')).toEqual({ host: '::1', port: 8443 })
    expect(parseHostPort('example.com')).toBeUndefined()
    expect(parseHostPort('example.com:0')).toBeUndefined()
    expect(parseHostPort('example.com:70000')).toBeUndefined()
  })

  it('listens on loopback only', () => {
    expect(loopbackListen(undefined)).toEqual({ host: '127.0.0.1', port: 3128 })
    expect(loopbackListen('127.0.0.1:8888')).toEqual({ host: '127.0.0.1', port: 8888 })
    expect(loopbackListen('localhost:3129')).toEqual({ host: 'localhost', port: 3129 })
    expect(() => loopbackListen('0.0.0.0:3128')).toThrow('not a loopback address')
    expect(() => loopbackListen('10.0.0.5:3128')).toThrow('not a loopback address')
    expect(() => loopbackListen('nonsense')).toThrow('--listen must be host:port on loopback')
  })

  it('builds the socket URL of each role (ws for http, wss for https)', () => {
    expect(egressSocketUrl('https://broker.example.com/', 'blue crab', 'host')).toBe(
      'wss://broker.example.com/v1/leases/blue%20crab/egress/host',
    )
    expect(egressSocketUrl('http://127.0.0.1:8787', 'cbx_0123456789ab', 'client')).toBe(
      'ws://127.0.0.1:8787/v1/leases/cbx_0123456789ab/egress/client',
    )
  })
})

describe('desktop launch --egress', () => {
  it('starts the browser with the egress proxy, which must be on loopback, and needs --browser', () => {
    expect(launchCommand({ browser: true, egress: 'discord' }, [])).toContain('--proxy-server=http://127.0.0.1:3128')
    expect(launchCommand({ browser: true, egress: 'slack', egressProxy: '127.0.0.1:3130', url: 'https://slack.com' }, [])).toMatch(
      /--proxy-server=http:\/\/127\.0\.0\.1:3130 https:\/\/slack\.com$/,
    )
    expect(launchCommand({ browser: true }, [])).not.toContain('--proxy-server')
    expect(() => launchCommand({ egress: 'discord' }, ['xterm'])).toThrow('--egress needs --browser')
    expect(() => launchCommand({ browser: true, egress: 'discord', egressProxy: '0.0.0.0:3128' }, [])).toThrow('not a loopback address')
  })
})

describe('why egress ended', () => {
  const later = (reason: string, ms: number) => new Promise<string>((resolve) => setTimeout(() => resolve(reason), ms))
  const never = new Promise<string>(() => {})
  it('a release seen by the host half soon after the client stopped is a clean end', async () => {
    expect(await firstEnd(later('broker link: the lease was released', 30), later('the egress client stopped', 0), 1000)).toBe(
      'broker link: the lease was released',
    )
    expect(await firstEnd(later('the lease was released', 0), never, 1000)).toBe('the lease was released')
  })
  it('a half that fails while the other goes on is the reason, after the grace', async () => {
    expect(await firstEnd(never, later('the egress client stopped', 0), 50)).toBe('the egress client stopped')
    expect(await firstEnd(later('ssh: connection lost', 0), later('egress client: broker refused', 10), 1000)).toBe('ssh: connection lost')
  })
})
