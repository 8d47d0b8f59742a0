import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config/load.js'
import { apiKey, parseSse } from '../../src/providers/islo/api.js'
import { execCommand, sandboxName, sandboxOf } from '../../src/providers/islo/index.js'

async function events(...chunks: string[]) {
  const body = (async function* () {
    for (const chunk of chunks) yield new TextEncoder().encode(chunk)
  })()
  const out = []
  for await (const event of parseSse(body)) out.push(event)
  return out
}

describe('islo api', () => {
  it('parses server-sent events split across chunks, with comments, CRLF and multi-line data', async () => {
    expect(
      await events(
        ': keep-alive\n\nevent: std',
        'out\ndata: {"data":"a"}\n\n',
        'event: exit\r\ndata: {"exit_code":',
        '0}\r\n\r\ndata: x\ndata: y\n\n',
      ),
    ).toEqual([
      { event: 'stdout', data: '{"data":"a"}' },
      { event: 'exit', data: '{"exit_code":0}' },
      { event: 'message', data: 'x\ny' },
    ])
  })

  it('drops a last event cut off without its blank line', async () => {
    expect(await events('event: stdout\ndata: {}\n\nevent: exit\ndata: {"exit_code":0}')).toEqual([{ event: 'stdout', data: '{}' }])
  })

  it('takes the key from CRABBOX_ISLO_API_KEY, then ISLO_API_KEY; none is exit 3 naming the variable', () => {
    expect(apiKey({ CRABBOX_ISLO_API_KEY: 'a', ISLO_API_KEY: 'b' })).toBe('a')
    expect(apiKey({ ISLO_API_KEY: 'b' })).toBe('b')
    expect(() => apiKey({})).toThrow(expect.objectContaining({ exitCode: 3, message: expect.stringMatching(/CRABBOX_ISLO_API_KEY/) }))
  })

  it('names sandboxes crabbox-<repo>-<6 hex> and reads them back from isb_ IDs', () => {
    expect(sandboxName('my-repo')).toMatch(/^crabbox-my-repo-[0-9a-f]{6}$/)
    expect(sandboxOf('isb_crabbox-my-repo-0a1b2c')).toBe('crabbox-my-repo-0a1b2c')
    expect(sandboxOf('isb_')).toBeUndefined()
    expect(sandboxOf('cbx_123')).toBeUndefined()
  })

  it('runs --shell and one-word commands through sh -c, other words as they are', () => {
    expect(execCommand(['npm test && echo ok'], false)).toEqual(['sh', '-c', 'npm test && echo ok'])
    expect(execCommand(['echo', '$HOME'], true)).toEqual(['sh', '-c', 'echo $HOME'])
    expect(execCommand(['printf', '%s', 'a b'], false)).toEqual(['printf', '%s', 'a b'])
  })
})

describe('islo settings', () => {
  it('defaults, the file and the CRABBOX_ISLO_* / ISLO_BASE_URL variables', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'islo-config-'))
    try {
      const env = { XDG_CONFIG_HOME: join(dir, 'xdg'), HOME: dir }
      const { config: base } = await loadConfig({ cwd: dir, env, warn: () => {} })
      expect(base.islo).toEqual({
        baseUrl: 'https://api.islo.dev',
        image: 'docker.io/library/ubuntu:24.04',
        workdir: 'crabbox',
        vcpus: 2,
        memoryMB: 4096,
        diskGB: 20,
      })
      writeFileSync(join(dir, 'crabbox.yaml'), 'provider: islo\nislo:\n  image: node:22\n  vcpus: 4\n  gatewayProfile: strict\n')
      const { config: file } = await loadConfig({
        cwd: dir,
        env: { ...env, ISLO_BASE_URL: 'http://b', CRABBOX_ISLO_MEMORY_MB: '8192' },
        warn: () => {},
      })
      expect(file.provider).toBe('islo')
      expect(file.islo).toMatchObject({ baseUrl: 'http://b', image: 'node:22', vcpus: 4, memoryMB: 8192, gatewayProfile: 'strict' })
      const { config: both } = await loadConfig({
        cwd: dir,
        env: { ...env, ISLO_BASE_URL: 'http://b', CRABBOX_ISLO_BASE_URL: 'http://a' },
        warn: () => {},
      })
      expect(both.islo.baseUrl).toBe('http://a')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
