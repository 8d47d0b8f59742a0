import { utils } from 'ssh2'
import { describe, expect, it } from 'vitest'
import { generateEd25519Pair } from '../../src/transport/ssh/keys.js'

describe('lease and runner key generation', () => {
  // ssh2's own generator writes an unparseable pair about once in 250; a local runner given
  // one died at start (exit 5). 2,000 pairs meet such a pair with near certainty.
  it('every generated ed25519 pair parses, private and public', async () => {
    for (let i = 0; i < 2000; i++) {
      const pair = await generateEd25519Pair('crabbox cbx_0123456789ab')
      expect(utils.parseKey(pair.private)).not.toBeInstanceOf(Error)
      expect(utils.parseKey(pair.public)).not.toBeInstanceOf(Error)
      expect(pair.public).toMatch(/^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]{43} crabbox cbx_0123456789ab$/)
    }
  })
})
