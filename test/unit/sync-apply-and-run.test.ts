import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import type { ManifestEntry } from '../../src/services/sync/manifest.js'
import { applyScript, type ApplyScriptOptions } from '../../src/services/sync/remote-scripts.js'
import { tarStream } from '../../src/services/sync/transfer.js'

/*
 * The apply with its tar inline and the command after `<tag> ok`
 * (steps/apply-and-run.ts), run here with the local sh, base64 and tar.
 */

const dirs: string[] = []
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

async function inlineTar(root: string, path: string): Promise<string> {
  const entry = { path, mode: 0o100644, size: readFileSync(join(root, path)).length, mtimeMs: Date.now() } as ManifestEntry
  const tar = tarStream({ root, entries: [entry], extra: () => [], extraPaths: [] }, { gzip: false })
  const [chunks] = await Promise.all([tar.stream.toArray() as Promise<Buffer[]>, tar.done])
  return Buffer.concat(chunks).toString('base64')
}

async function setup() {
  const local = mkdtempSync(join(tmpdir(), 'crabbox-onexec-local-'))
  const runner = mkdtempSync(join(tmpdir(), 'crabbox-onexec-runner-'))
  dirs.push(local, runner)
  mkdirSync(join(runner, '.crabbox'))
  writeFileSync(join(runner, '.crabbox', 'sync-fingerprint'), 'fp-old\n')
  writeFileSync(join(runner, 'a.txt'), 'old\n')
  writeFileSync(join(local, 'a.txt'), 'new\n')
  const options: ApplyScriptOptions = {
    workdir: runner,
    meta: '.crabbox',
    fingerprint: 'fp-new',
    pending: [],
    remove: [],
    tar: { gzip: false, inline: await inlineTar(local, 'a.txt') },
    fullManifest: false,
    records: [],
    expect: { fingerprint: 'fp-old', maxDelta: 1024 },
    thenRun: true,
  }
  const run = (script: string, command: string, input = '') =>
    spawnSync('sh', ['-c', script, 'crabbox-apply-run', 'TAG', command], { input, encoding: 'utf8' })
  return { runner, options, run }
}

describe('the apply and the command in one exec', () => {
  it('lands the inline tar, writes the fingerprint, then prints the tag and runs the command with stdin untouched', async () => {
    const { runner, options, run } = await setup()
    const script = applyScript(options)
    expect(spawnSync('sh', ['-n'], { input: script }).status).toBe(0)
    // eslint-disable-next-line no-template-curly-in-string -- a shell parameter expansion, not a template
    const result = run(script, 'cat a.txt; cat; echo "unset: ${nope:-ok}"; exit 7', 'from stdin\n')
    expect(result.status, result.stderr).toBe(7)
    const [before, after] = result.stdout.split('TAG ok\n')
    expect(before).toMatch(/^mark transfer$/m)
    expect(after).toBe('new\nfrom stdin\nunset: ok\n')
    expect(readFileSync(join(runner, 'a.txt'), 'utf8')).toBe('new\n')
    expect(readFileSync(join(runner, '.crabbox', 'sync-fingerprint'), 'utf8')).toBe('fp-new\n')
  })

  it('a stale runner changes nothing, leaves stdin alone and never prints the tag', async () => {
    const { runner, options, run } = await setup()
    const script = applyScript({ ...options, expect: { fingerprint: 'fp-other', maxDelta: 1024 } })
    const result = run(script, 'echo COMMAND-RAN')
    expect(result.status, result.stderr).toBe(0)
    expect(result.stdout).toBe('stale\n')
    expect(readFileSync(join(runner, 'a.txt'), 'utf8')).toBe('old\n')
    expect(script).not.toContain('cat > /dev/null')
  })

  it('a failed extraction exits with the tar status before the tag', async () => {
    const { options, run } = await setup()
    const script = applyScript({ ...options, tar: { gzip: false, inline: Buffer.from('not a tar').toString('base64') } })
    const result = run(script, 'echo COMMAND-RAN')
    expect(result.status).toBe(71)
    expect(result.stdout).not.toContain('TAG ok')
    expect(result.stdout).not.toContain('COMMAND-RAN')
    expect(result.stderr).toMatch(/failed to (extract|decode) the sync stream/)
  })
})
