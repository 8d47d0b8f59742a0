import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { PROBE_SCRIPT } from '../../src/services/sync/probe-protocol.js'
import { PART_SCRIPT, RUN_UPLOADED_SCRIPT, UPLOAD_SCRIPT } from '../../src/services/sync/remote-scripts.js'

/** GNU-only forms a Mac (BSD tar, stat, sed, readlink, find) does not run. */
const GNU_ONLY = [
  /\bstat -c\b/,
  /\bstat --/,
  /\bsha256sum\b/,
  /\breadlink -f\b/,
  /\bsed -i\b/,
  /-printf\b/,
  /\bdate \+%s%N\b/,
  /\bxargs -r\b/,
  /\btar --(?!no-same-owner)/,
]

describe('runner scripts on BSD userlands (macOS)', () => {
  it('use only POSIX sh and tar flags bsdtar also takes', () => {
    const sources = [
      'src/services/sync/remote-scripts.ts',
      'src/services/sync/probe-protocol.ts',
      'src/services/sync/git-seed.ts',
      'src/services/run/remote-command.ts',
    ]
    for (const file of sources) {
      const text = readFileSync(file, 'utf8')
      for (const pattern of GNU_ONLY) expect(pattern.test(text), `${file}: ${pattern}`).toBe(false)
    }
    for (const script of [PROBE_SCRIPT, PART_SCRIPT, UPLOAD_SCRIPT, RUN_UPLOADED_SCRIPT])
      expect(spawnSync('sh', ['-n'], { input: script }).status).toBe(0)
    expect(readFileSync('src/services/sync/remote-scripts.ts', 'utf8')).toContain('-xpf - --no-same-owner')
  })
})
