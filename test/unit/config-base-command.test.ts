import { Errors } from '@oclif/core'
import { Writable } from 'node:stream'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { BaseCommand } from '../../src/base-command.js'
import { CrabboxError, RemoteExit } from '../../src/errors.js'
import { createProgress } from '../../src/ui/progress.js'
import { repoRoot } from '../support/cli.js'

// Real oclif commands run in-process, so the error → exit code mapping is exercised as the CLI does it.
const failWith = (error: Error) =>
  class Failing extends BaseCommand<typeof Failing> {
    async run(): Promise<void> {
      throw error
    }
  }

async function exitOf(command: ReturnType<typeof failWith>) {
  const stderr: string[] = []
  const stdout: string[] = []
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => (stderr.push(String(chunk)), true))
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => (stdout.push(String(chunk)), true))
  const error = await command.run([], repoRoot).then(
    () => undefined,
    (e: unknown) => e,
  )
  vi.restoreAllMocks()
  expect(error).toBeInstanceOf(Errors.ExitError)
  return { code: (error as Errors.ExitError).oclif.exit, stderr: stderr.join(''), stdout: stdout.join('') }
}

afterEach(() => vi.restoreAllMocks())

describe('BaseCommand error mapping', () => {
  it('passes a remote exit code through silently', async () => {
    expect(await exitOf(failWith(new RemoteExit(42)))).toEqual({ code: 42, stderr: '', stdout: '' })
  })

  // The --json shape is proven through the built CLI in test/e2e/cli-frame.test.ts.
  it('prints a CrabboxError as error + hint on stderr with its exit code', async () => {
    const command = failWith(new CrabboxError('lease not found', { exit: 'notFound', hint: 'Run crabbox list.' }))
    const human = await exitOf(command)
    expect(human).toMatchObject({ code: 4, stdout: '' })
    expect(human.stderr).toBe('error: lease not found\nRun crabbox list.\n')
  })

  it('turns an unexpected error into exit 1 with a --debug hint', async () => {
    const result = await exitOf(failWith(new TypeError('boom')))
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('error: boom')
    expect(result.stderr).toContain('--debug')
  })
})

describe('progress', () => {
  const sink = (tty: boolean) => {
    let text = ''
    const stream = new Writable({ write: (chunk, _enc, done) => ((text += chunk), done()) }) as unknown as NodeJS.WriteStream
    stream.isTTY = tty
    return { stream, text: () => text }
  }

  it('redraws one spinner line per phase on a terminal', () => {
    const out = sink(true)
    const progress = createProgress({ stream: out.stream })
    progress.phase('leasing')
    progress.phase('syncing')
    progress.done('done')
    // The live line carries the phase's elapsed time; the finished phase leaves `✓ message duration`.
    // Each frame is written with autowrap off and leaves the cursor at its start; the next erases it and the rows below.
    const erase = '\r\u001b[K\u001b7\u001b[1B\u001b[J\u001b8'
    const frames = out.text().split(erase)
    expect(frames.map((frame) => frame.replace('\u001b[?7l', '').replace('\u001b[?7h', ''))).toEqual([
      expect.stringMatching(/^\S+ leasing \d+\.\ds\r$/),
      expect.stringMatching(/^\S+ syncing \d+\.\ds\r$/),
      expect.stringMatching(/^✓ done \d+\.\ds\n$/),
    ])
  })

  it('writes plain lines when not a terminal', () => {
    const out = sink(false)
    const progress = createProgress({ stream: out.stream, env: {} })
    progress.phase('leasing')
    progress.warn('slow')
    progress.done()
    // Phase lines are timestamped; warnings are not.
    expect(out.text()).toMatch(/^\d\d:\d\d:\d\d leasing\nwarning: slow\n$/)
  })
})
