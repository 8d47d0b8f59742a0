import { describe, expect, it } from 'vitest'
import { newTag, tagDemux, type TagSink } from '../../src/services/sync/tag-demux.js'

/* The split of one exec's output at `<tag> ok` (src/services/sync/tag-demux.ts). */

function recorder(extra: Partial<TagSink> = {}) {
  const events: string[] = []
  const sink: TagSink = {
    onStart: (before, held) => events.push(`start before=${before.toString()} held=${Buffer.concat(held).toString()}`),
    onStale: (before) => events.push(`stale before=${before.toString()}`),
    onStdout: (chunk) => events.push(`out ${chunk.toString()}`),
    onStderr: (chunk) => events.push(`err ${chunk.toString()}`),
    ...extra,
  }
  return { events, sink }
}

const text = (events: string[], kind: string) =>
  events
    .filter((event) => event.startsWith(`${kind} `))
    .map((event) => event.slice(kind.length + 1))
    .join('')

describe('tag demux', () => {
  it('passes nothing on before `<tag> ok`, even split across chunks; the held stderr comes with the start', () => {
    const tag = newTag()
    expect(tag).toMatch(/^crabbox-[0-9a-f]{24}$/)
    const { events, sink } = recorder()
    const demux = tagDemux(tag, sink)
    demux.onStderr(Buffer.from('shell noise\n'))
    const stdout = Buffer.from(`motd\n${tag} ok\ncommand out\n`)
    // One byte at a time: the tag line is never whole in one chunk.
    for (let i = 0; i < stdout.length; i++) {
      demux.onStdout(stdout.subarray(i, i + 1))
      if (i < stdout.indexOf(`${tag} ok\n`) + tag.length + 3) expect(events).toEqual([])
    }
    demux.onStderr(Buffer.from('command err\n'))
    expect(events[0]).toBe('start before=motd\n held=shell noise\n')
    expect(text(events, 'out')).toBe('command out\n')
    expect(events.at(-1)).toBe('err command err\n')
    expect(demux.verdict()).toBe('ok')
    expect(demux.held()).toEqual([])
  })

  it('the tag may follow output without a newline; the rest of its chunk is the command’s', () => {
    const tag = newTag()
    const { events, sink } = recorder()
    const demux = tagDemux(tag, sink)
    demux.onStdout(Buffer.from(`partial${tag} ok\nfirst`))
    demux.onStdout(Buffer.from(' second'))
    expect(events).toEqual(['start before=partial held=', 'out first', 'out  second'])
  })

  it('`<tag> stale` ends the head without the command: what follows is kept, the stderr stays held', () => {
    const tag = newTag()
    const { events, sink } = recorder()
    const demux = tagDemux(tag, sink)
    demux.onStderr(Buffer.from('why\n'))
    demux.onStdout(Buffer.from(`${tag} stale\nprobe 1\n`))
    demux.onStdout(Buffer.from(`probe 2\n${tag} ok\n`))
    expect(events).toEqual(['stale before='])
    expect(demux.verdict()).toBe('stale')
    expect(demux.after().toString()).toBe(`probe 1\nprobe 2\n${tag} ok\n`)
    expect(Buffer.concat(demux.held()).toString()).toBe('why\n')
  })

  it('hands each complete line ahead of the tag to onLine as it arrives; true ends the head on that line', () => {
    const tag = newTag()
    const lines: string[] = []
    const { events, sink } = recorder({ onLine: (line) => (lines.push(line), line === 'stale') })
    const demux = tagDemux(tag, sink)
    demux.onStdout(Buffer.from('mark a\nmar'))
    expect(lines).toEqual(['mark a'])
    demux.onStdout(Buffer.from('k b\nstale\nrecord 1\n'))
    demux.onStdout(Buffer.from('record 2\n'))
    expect(lines).toEqual(['mark a', 'mark b', 'stale'])
    expect(events).toEqual(['stale before=mark a\nmark b\n'])
    expect(demux.after().toString()).toBe('record 1\nrecord 2\n')
  })

  it('onLine sees the lines ahead of `<tag> ok`, never the tag line or the command’s output', () => {
    const tag = newTag()
    const lines: string[] = []
    const { events, sink } = recorder({ onLine: (line) => void lines.push(line) })
    const demux = tagDemux(tag, sink)
    demux.onStdout(Buffer.from(`mark a\n${tag} ok\nout 1\n`))
    demux.onStdout(Buffer.from('out 2\n'))
    expect(lines).toEqual(['mark a'])
    expect(text(events, 'out')).toBe('out 1\nout 2\n')
  })

  it('without a tag nothing reaches the command’s output; heldBytes keeps the newest stderr', () => {
    const tag = newTag()
    const { events, sink } = recorder({ heldBytes: 8 })
    const demux = tagDemux(tag, sink)
    demux.onStdout(Buffer.from('apply output\n'))
    for (const chunk of ['aaaa', 'bbbb', 'cccc', 'dd']) demux.onStderr(Buffer.from(chunk))
    expect(events).toEqual([])
    expect(demux.verdict()).toBeUndefined()
    expect(Buffer.concat(demux.held()).toString()).toBe('bbbbccccdd')
  })
})
