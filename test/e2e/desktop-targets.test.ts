import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cliHome, runCli, spawnCli, type CliHome } from '../support/cli.js'
import { until } from '../support/fixtures.js'
import { sshHost, type SshHost } from '../support/ssh-host.js'

/**
 * The desktop commands per target OS, as a declared static host (`--provider ssh`,
 * `CRABBOX_TARGET`). Windows and WSL2 have no desktop in this version, and a static
 * Mac's screen is its owner's: those are refused with exit 2 before any SSH (the host
 * address answers nothing, so an attempt would be exit 7). The macOS VNC path runs
 * against a Linux sshd test host standing in for a Mac: what it proves is the command
 * crabbox sends (the Screen Sharing password file) and the tunnel, not macOS itself.
 */

const NOWHERE = ['--provider', 'ssh', '--static-host', '127.0.0.9', '--static-port', '1']
/** The command with the unreachable host's flags before any `--`. */
const nowhere = (command: string[]) => {
  const dashes = command.indexOf('--')
  return dashes < 0 ? [...command, ...NOWHERE] : [...command.slice(0, dashes), ...NOWHERE, ...command.slice(dashes)]
}

describe('desktop commands per target', () => {
  let home: CliHome
  const cli = (args: string[], env: Record<string, string>) => runCli(args, { home, env, timeoutMs: 60_000 })

  beforeAll(() => {
    home = cliHome()
    const key = join(home.dir, 'id_ed25519')
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key])
    home.env = { ...home.env, CRABBOX_SSH_KEY: key, CRABBOX_STATIC_DESKTOP: '1' }
  })

  const commands: string[][] = [
    ['vnc', '--host-managed'],
    ['screenshot'],
    ['desktop', 'doctor'],
    ['desktop', 'launch', '--', 'xterm'],
    ['desktop', 'click', '--x', '1', '--y', '1'],
    ['desktop', 'type', '--text', 'hello'],
    ['desktop', 'key', 'Return'],
    ['desktop', 'paste', '--text', 'hello'],
    ['artifacts', 'video', '--duration', '1s'],
    ['artifacts', 'collect', '--no-webvnc-status'],
  ]

  it('refuses every desktop command on Windows and WSL2 with the reason, before any SSH', async () => {
    for (const [mode, reason] of [
      ['normal', /crabbox does not install a Windows desktop yet: no VNC server is set up on Windows runners \((\w+) refused\)/],
      ['wsl2', /a WSL2 runner has no desktop: WSL2 has no display of its own \((\w+) refused\)/],
    ] as const)
      for (const command of commands) {
        const result = await cli(nowhere(command), { CRABBOX_TARGET: 'windows', CRABBOX_WINDOWS_MODE: mode })
        expect(result.code, `${mode} ${command.join(' ')}: ${result.stderr}`).toBe(2)
        expect(result.stderr).toMatch(reason)
        expect(result.stderr).not.toMatch(/cannot reach/)
      }
  })

  it('refuses on a static Mac what crabbox cannot do there, naming why', async () => {
    const expected: Array<[string[], RegExp]> = [
      [['screenshot'], /a static Mac's screen belongs to its owner: crabbox takes no screenshots there \(use vnc --host-managed\)/],
      [['desktop', 'doctor'], /a static Mac's screen belongs to its owner/],
      [['desktop', 'click', '--x', '1', '--y', '1'], /crabbox has no input tool for macOS runners yet \(input refused\)/],
      [['desktop', 'launch', '--', 'open'], /crabbox has no app launcher for macOS runners yet \(launch refused\)/],
      [['desktop', 'launch', '--browser'], /crabbox installs no browser on macOS runners/],
      [['artifacts', 'video', '--duration', '1s'], /crabbox has no screen recorder for macOS runners yet \(video refused\)/],
    ]
    for (const [command, reason] of expected) {
      const result = await cli(nowhere(command), { CRABBOX_TARGET: 'macos' })
      expect(result.code, `${command.join(' ')}: ${result.stderr}`).toBe(2)
      expect(result.stderr).toMatch(reason)
      expect(result.stderr).toContain('(macos)')
    }
  })

  describe('vnc on a static Mac (a Linux sshd host standing in)', () => {
    let host: SshHost
    const password = 'screen-sharing-pw'
    beforeAll(async () => {
      host = await sshHost({ name: 'mac-vnc', privateDirs: ['/var/db/crabbox'] })
      writeFileSync(host.path('/var/db/crabbox/vnc.password'), `${password}\n`)
      await host.run(`chown ${host.user} /var/db/crabbox/vnc.password && chmod 0600 /var/db/crabbox/vnc.password`)
      // Screen Sharing greets with RFB 003.889; this stand-in only says that much.
      const server = `require('net').createServer((s) => s.on('error', () => {}).end('RFB 003.889\\n')).listen(5900, '127.0.0.1')`
      await host.run(`setsid nohup ${process.execPath} -e "${server}" >/dev/null 2>&1 </dev/null &`)
      const listening = async () =>
        (
          await host.run(
            `${process.execPath} -e "require('net').connect(5900, '127.0.0.1').on('connect', () => process.exit(0)).on('error', () => process.exit(1))"`,
          )
        ).code === 0
      await until('the RFB stand-in', listening, 15_000)
    }, 60_000)
    afterAll(async () => {
      if (home) await runCli(['agent', 'stop'], { home })
      await host?.stop()
    })

    it('reads the Screen Sharing password from /var/db/crabbox and forwards 5900', async () => {
      const at = ['--provider', 'ssh', '--static-host', host.address, '--static-port', '22', '--static-user', host.user]
      const child = spawnCli(['vnc', ...at, '--local-port', '0', '--host-managed'], {
        home,
        env: { CRABBOX_TARGET: 'macos', CRABBOX_SSH_KEY: host.privateKeyPath },
      })
      let out = ''
      child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d))
      let err = ''
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d))
      try {
        await until('the forward', () => /forwarding until Ctrl-C/.test(out) || child.exitCode !== null, 30_000)
        expect(out, err).toContain(`password: ${password}`)
        const port = Number(/vnc: localhost:(\d+)/.exec(out)![1])
        const banner = await new Promise<string>((resolve, reject) => {
          const socket = connect({ host: '127.0.0.1', port })
          socket.once('data', (data) => {
            socket.destroy()
            resolve(data.toString('latin1'))
          })
          socket.once('error', reject)
          socket.once('close', () => reject(new Error(`no banner through the forward; vnc said: ${out}${err}`)))
        })
        expect(banner).toBe('RFB 003.889\n')
      } finally {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGINT')
          await new Promise((resolve) => child.once('exit', resolve))
        }
      }
    })
  })
})
