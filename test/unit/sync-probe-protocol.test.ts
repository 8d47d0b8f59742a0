import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { defaultConfig } from '../../src/config/schema.js'
import { PROBE_SCRIPT, parseProbe, parseRemoteGit, probeArgs } from '../../src/services/sync/probe-protocol.js'
import { encodeRecord, parseRecords } from '../../src/services/sync/records.js'

const fp = 'a'.repeat(64)
const head = 'b'.repeat(40)
const base = 'c'.repeat(40)

describe('sync probe protocol', () => {
  it('reads fingerprint, git, record sizes and the raw record that follows `manifest`', () => {
    const records = encodeRecord('1'.repeat(64), 0o100644, 'src/a b.ts') + encodeRecord('2'.repeat(64), 0o100755, 'bin/run\nwith newline')
    const stdout = Buffer.concat([Buffer.from(`fp ${fp}\ngit ${head} 1 ${base}\nsizes 1234 56\nmanifest\n`), Buffer.from(records)])
    const probe = parseProbe(stdout)
    expect(probe.fingerprint).toBe(fp)
    expect(probe.git).toEqual({ missing: false, head, hasHead: true, base })
    expect(probe.sizes).toEqual({ base: 1234, delta: 56 })
    expect(probe.known).toBe(false)
    // Byte for byte, newlines inside paths included: the record is not split into lines.
    expect(probe.records.toString('utf8')).toBe(records)
    expect([...parseRecords(probe.records).keys()]).toEqual(['src/a b.ts', 'bin/run\nwith newline'])
  })

  it('`manifest known`: the runner holds a fingerprint whose record we kept, so nothing follows', () => {
    const probe = parseProbe(Buffer.from(`fp ${fp}\ngit - 0 -\nsizes 0 0\nmanifest known\n`))
    expect(probe).toMatchObject({ fingerprint: fp, known: true, sizes: { base: 0, delta: 0 } })
    expect(probe.records.length).toBe(0)
    expect(probe.git).toEqual({ missing: false, head: undefined, hasHead: false, base: undefined })
  })

  it('an empty workdir: no fingerprint, no record; a runner without git; a cut-off answer keeps the defaults', () => {
    const fresh = parseProbe(Buffer.from('fp -\ngit nogit 0 -\nsizes 0 0\nmanifest\n'))
    expect(fresh.fingerprint).toBeUndefined()
    expect(fresh.git?.missing).toBe(true)
    expect(fresh.git?.head).toBeUndefined()
    expect(fresh.records.length).toBe(0)
    const cut = parseProbe(Buffer.from('fp -\ngit'))
    expect(cut).toMatchObject({ fingerprint: undefined, sizes: { base: 0, delta: 0 }, known: false })
    expect(parseRemoteGit('git - 0 -')).toEqual({ missing: false, head: undefined, hasHead: false, base: undefined })
    expect(parseProbe(Buffer.from('sizes x 7\n')).sizes).toEqual({ base: 0, delta: 7 })
  })

  it('parses what the script itself prints (run with the local sh)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'crabbox-probe-'))
    try {
      const workdir = join(dir, 'work')
      const args = probeArgs(workdir, undefined, defaultConfig().sync, [])
      expect(args).toEqual([workdir, '.crabbox', '-', '-'])
      const first = spawnSync('sh', ['-c', PROBE_SCRIPT, 'crabbox-probe', ...args])
      expect(first.status).toBe(0)
      expect(parseProbe(first.stdout)).toMatchObject({
        fingerprint: undefined,
        git: { head: undefined },
        sizes: { base: 0, delta: 0 },
        known: false,
      })

      const record = encodeRecord('1'.repeat(64), 0o100644, 'a.txt')
      const delta = encodeRecord('-', 0o100644, 'a.txt')
      mkdirSync(join(workdir, '.crabbox'), { recursive: true })
      writeFileSync(join(workdir, '.crabbox', 'sync-fingerprint'), `${fp}\n`)
      writeFileSync(join(workdir, '.crabbox', 'sync-manifest'), record)
      writeFileSync(join(workdir, '.crabbox', 'sync-manifest.delta'), delta)
      const second = parseProbe(spawnSync('sh', ['-c', PROBE_SCRIPT, 'crabbox-probe', ...args]).stdout)
      expect(second).toMatchObject({
        fingerprint: fp,
        known: false,
        sizes: { base: Buffer.byteLength(record), delta: Buffer.byteLength(delta) },
      })
      expect(second.records.toString('utf8')).toBe(record + delta)

      const known = parseProbe(
        spawnSync('sh', ['-c', PROBE_SCRIPT, 'crabbox-probe', ...probeArgs(workdir, undefined, defaultConfig().sync, ['d'.repeat(64), fp])])
          .stdout,
      )
      expect(known).toMatchObject({ fingerprint: fp, known: true })
      expect(known.records.length).toBe(0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
