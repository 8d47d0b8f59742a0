import { describe, expect, it } from 'vitest'
import { randomAdminPassword } from '../../src/cloud/azure-machines.js'
import { wslCommand } from '../../src/services/run/target-command.js'
import { wslSession } from '../../src/services/windows/wsl-session.js'
import type { ExecOptions, SshSession } from '../../src/transport/ssh/types.js'
import { decodeCommand, startedWith } from '../support/powershell.js'

/** A session that records what would go over SSH. */
function recording(): { session: SshSession; execs: { command: string; options: ExecOptions }[] } {
  const execs: { command: string; options: ExecOptions }[] = []
  const session: SshSession = {
    exec: async (command, options = {}) => {
      execs.push({ command, options })
      return { code: 0 }
    },
    shell: async () => {
      throw new Error('no shell here')
    },
    close: async () => {},
  }
  return { session, execs }
}

/** The Linux line a wsl.exe exec string carries. */
const linuxOf = (command: string) => {
  const { program, args } = startedWith(decodeCommand(command))
  expect(program).toBe('wsl.exe')
  return Buffer.from(/printf %s ([A-Za-z0-9+/=]+) \| base64 -d/.exec(args[3])![1], 'base64').toString('utf8')
}

describe('the WSL2 session wrapper', () => {
  it('sends one wsl.exe line with the folder and environment as a shell prefix', async () => {
    const { session, execs } = recording()
    await wslSession(session).exec('echo "$GREETING" ☃', { cwd: '/work/crabbox/cbx_1/repo', env: { GREETING: "it's" } })
    expect(execs).toHaveLength(1)
    expect(execs[0].options).toEqual({})
    expect(execs[0].command).toBe(wslCommand(`export GREETING='it'\\''s'; cd /work/crabbox/cbx_1/repo && echo "$GREETING" ☃`))
  })

  it('stages a command too long for cmd.exe in a file first, then runs it from there with the caller stdin', async () => {
    const { session, execs } = recording()
    const long = `echo ${'x'.repeat(4000)}`
    await wslSession(session).exec(long, { stdin: 'input' })
    expect(execs).toHaveLength(2)
    const staged = linuxOf(execs[0].command)
    expect(staged).toMatch(/^umask 077 && cat > \/tmp\/crabbox-wsl-[0-9a-f]{12}\.sh$/)
    expect(execs[0].options.stdin).toBe(long)
    const file = staged.split(' ').pop()!
    expect(linuxOf(execs[1].command)).toBe(`bash ${file}; st=$?; rm -f ${file}; exit $st`)
    expect(execs[1].options.stdin).toBe('input')
    for (const { command } of execs) expect(command.length).toBeLessThanOrEqual(8191)
  })
})

describe('the Azure Windows admin password', () => {
  it('has 24 characters from each class Azure asks for, fresh each time', () => {
    const seen = new Set<string>()
    for (let i = 0; i < 50; i++) {
      const password = randomAdminPassword()
      expect(password).toMatch(/^(?=.*[A-Z])(?=.*[a-z])(?=.*\d)(?=.*[^A-Za-z\d]).{24}$/)
      seen.add(password)
    }
    expect(seen.size).toBe(50)
  })
})
