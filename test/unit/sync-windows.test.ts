import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { describe, expect, it } from 'vitest'
import { CrabboxError } from '../../src/errors.js'
import { MODE_FILE, type ManifestEntry } from '../../src/services/sync/manifest.js'
import { tarStream } from '../../src/services/sync/transfer.js'
import { checkWindowsManifest, windowsExtractCommand, windowsNameProblem, windowsUnsafePaths } from '../../src/services/sync/windows.js'
import { decodeCommand, startedWith } from '../support/powershell.js'

const entry = (path: string, size = 0): ManifestEntry => ({ path, mode: MODE_FILE, size, mtimeMs: 0, ctimeMs: 0, ino: 0 })

/** Every file under `root`, as `/`-separated relative paths. */
function walk(root: string, dir = root): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((item) =>
    item.isDirectory() ? walk(root, join(dir, item.name)) : [relative(root, join(dir, item.name)).split('\\').join('/')],
  )
}

describe('Windows-safe names', () => {
  it('accepts ordinary names, unicode and names that only start like a device', () => {
    for (const path of ['src/index.ts', 'docs/ünïcødé ✓.md', 'console/log.txt', 'a/.gitkeep', 'aux-tools/x', 'com10', 'lpt.txt'])
      expect(windowsNameProblem(path), path).toBeUndefined()
  })

  it('refuses reserved device names, forbidden characters, trailing dots and spaces, and case clashes', () => {
    const unsafe = windowsUnsafePaths(
      ['aux.txt', 'src/NUL', 'a:b', 'what?', 'x/dir./f', 'trail ', 'back\\slash', 'tab\tname', 'README.md', 'readme.md', 'ok.txt'].map(
        (p) => entry(p),
      ),
    )
    expect(unsafe.map((u) => u.path)).toEqual([
      'aux.txt',
      'src/NUL',
      'a:b',
      'what?',
      'x/dir./f',
      'trail ',
      'back\\slash',
      'tab\tname',
      'readme.md',
    ])
    expect(unsafe.find((u) => u.path === 'aux.txt')!.reason).toBe('"aux.txt" is a device name Windows reserves')
    expect(unsafe.find((u) => u.path === 'a:b')!.reason).toBe('"a:b" has the character :, which Windows forbids in names')
    expect(unsafe.find((u) => u.path === 'x/dir./f')!.reason).toBe('"dir." ends with a dot, which Windows drops')
    expect(unsafe.find((u) => u.path === 'readme.md')!.reason).toBe(
      'differs from "README.md" only in letter case, and Windows names ignore case',
    )
  })

  it('refuses the sync with exit 6, listing the paths and the way out', () => {
    let error: unknown
    try {
      checkWindowsManifest([entry('ok.ts'), entry('con.log'), entry('b|c')])
    } catch (caught) {
      error = caught
    }
    expect(error).toBeInstanceOf(CrabboxError)
    expect((error as CrabboxError).exitCode).toBe(6)
    expect((error as CrabboxError).message).toBe(
      '2 paths cannot be synced to Windows as named:\n  con.log: "con.log" is a device name Windows reserves\n  b|c: "b|c" has the character |, which Windows forbids in names',
    )
    expect((error as CrabboxError).hint).toMatch(/sync\.exclude or \.crabboxignore/)
    expect(() => checkWindowsManifest([entry('ok.ts')])).not.toThrow()
  })
})

describe('the Windows sync archive', () => {
  it('extracts, with the arguments the runner uses, to exactly the checked names', async () => {
    const root = mkdtempSync(join(tmpdir(), 'crabbox-winsync-'))
    const out = mkdtempSync(join(tmpdir(), 'crabbox-winsync-out-'))
    try {
      const paths = ['package.json', 'src/deep/ünïcødé ✓.ts', 'docs/two  spaces.md', "quote's/$dollar%percent.txt"]
      const entries = paths.map((path) => {
        mkdirSync(dirname(join(root, path)), { recursive: true })
        writeFileSync(join(root, path), `content of ${path}\n`)
        return entry(path, Buffer.byteLength(`content of ${path}\n`))
      })
      checkWindowsManifest(entries)
      const { stream, done } = tarStream({ root, entries, extra: () => [], extraPaths: [] }, { gzip: true })
      const chunks: Buffer[] = []
      for await (const chunk of stream) chunks.push(chunk as Buffer)
      await done

      const command = windowsExtractCommand('C:\\crabbox\\cbx_0123456789ab\\repo', true)
      const script = decodeCommand(command)
      expect(script).toContain(
        "New-Item -ItemType Directory -Force -Path 'C:\\crabbox\\cbx_0123456789ab\\repo' | Out-Null\r\nSet-Location -LiteralPath 'C:\\crabbox\\cbx_0123456789ab\\repo'",
      )
      const started = startedWith(script)
      expect(started).toEqual({ program: 'tar.exe', args: ['-xzf', '-'] })
      // The same extraction here (GNU tar; the runner's is bsdtar with the same flags).
      const extract = spawnSync('tar', started.args, { cwd: out, input: Buffer.concat(chunks) })
      expect(extract.status, extract.stderr?.toString()).toBe(0)
      const extracted = walk(out).sort()
      expect(extracted).toEqual([...paths].sort())
      for (const path of extracted) {
        expect(windowsNameProblem(path), path).toBeUndefined()
        expect(readFileSync(join(out, path), 'utf8')).toBe(`content of ${path}\n`)
      }
    } finally {
      rmSync(root, { recursive: true, force: true })
      rmSync(out, { recursive: true, force: true })
    }
  })
})
