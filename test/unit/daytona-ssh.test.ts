import { describe, expect, it } from 'vitest'
import { gatewayFrom } from '../../src/providers/daytona/ssh.js'

describe('daytona SSH access', () => {
  it('connects where the sshCommand Daytona returns says, with the token as the user', () => {
    expect(gatewayFrom('ssh tok123@ssh.app.daytona.io', 'tok123', 'fallback.example')).toEqual({
      host: 'ssh.app.daytona.io',
      port: 22,
      user: 'tok123',
    })
    expect(gatewayFrom('ssh -p 2222 tok@gw.example.test', 'tok', 'fallback.example')).toEqual({
      host: 'gw.example.test',
      port: 2222,
      user: 'tok',
    })
    expect(gatewayFrom('ssh -p2200 tok@gw.example.test', 'tok', 'fallback.example')).toMatchObject({ port: 2200 })
  })

  it('falls back to daytona.sshGatewayHost on port 22 when the answer names no host', () => {
    expect(gatewayFrom(undefined, 'tok', 'ssh.app.daytona.io')).toEqual({ host: 'ssh.app.daytona.io', port: 22, user: 'tok' })
    expect(gatewayFrom('', 'tok', 'gw.example.test')).toEqual({ host: 'gw.example.test', port: 22, user: 'tok' })
  })
})
