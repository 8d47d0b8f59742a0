import { SELF } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'

describe('broker health', () => {
  it('answers /v1/health without auth', async () => {
    const response = await SELF.fetch('https://broker.test/v1/health')
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual({ ok: true, service: 'crabbox-coordinator' })
  })
})
