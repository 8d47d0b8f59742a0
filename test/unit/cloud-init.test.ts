import { execFileSync, spawnSync } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { knownHostsLines, parseConsoleHostKeys, renderCloudInit, type BootstrapOptions } from '../../src/cloud/cloud-init.js'

const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGNsb3VkLWluaXQtdGVzdC1rZXktbWF0ZXJpYWwtMDAw crabbox cbx_0123456789ab'
const options: BootstrapOptions = {
  sshUser: 'crabbox',
  sshPublicKey: key,
  sshPort: '2222',
  sshFallbackPorts: ['22'],
  workRoot: '/work/crabbox',
}
const rendered = () =>
  parse(renderCloudInit(options)) as {
    users: Array<string | Record<string, unknown>>
    ssh_pwauth: boolean
    package_update: boolean
    write_files: Array<{ path: string; permissions: string; content: string }>
    runcmd: string[][]
  }
const file = (path: string) => rendered().write_files.find((f) => f.path === path)!
const scratch = mkdtempSync(join(tmpdir(), 'crabbox-cloud-init-'))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

describe('runner bootstrap (cloud-init)', () => {
  it('is cloud-config YAML creating the crabbox user with only the lease key and passwordless sudo', () => {
    const text = renderCloudInit(options)
    expect(text.startsWith('#cloud-config\n')).toBe(true)
    const doc = rendered()
    expect(doc.ssh_pwauth).toBe(false)
    expect(doc.package_update).toBe(false)
    expect(doc.users[1]).toEqual({
      name: 'crabbox',
      groups: ['sudo'],
      shell: '/bin/bash',
      sudo: 'ALL=(ALL) NOPASSWD:ALL',
      lock_passwd: true,
      ssh_authorized_keys: [key],
    })
  })

  it('puts sshd on the primary port 2222 and the fallback 22 with password login off', () => {
    const sshd = file('/etc/ssh/sshd_config.d/99-crabbox.conf').content.split('\n')
    expect(sshd).toEqual(expect.arrayContaining(['Port 2222', 'Port 22', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no']))
    const custom = parse(renderCloudInit({ ...options, sshPort: '2200', sshFallbackPorts: [] })).write_files[0].content
    expect(
      custom
        .trim()
        .split('\n')
        .filter((l: string) => l.startsWith('Port')),
    ).toEqual(['Port 2200'])
  })

  it('installs git, rsync, curl, jq and tar through the retry helper, then marks the box bootstrapped', () => {
    const commands = rendered().runcmd.map((c) => c[2])
    const install = commands.findIndex((c) => /crabbox-retry apt-get install/.test(c))
    expect(install).toBeGreaterThan(0)
    for (const tool of ['git', 'rsync', 'curl', 'jq', 'tar', 'openssh-server'])
      expect(commands[install]).toMatch(new RegExp(`\\b${tool}\\b`))
    const marker = commands.findIndex((c) => /touch \/var\/lib\/crabbox\/bootstrapped/.test(c))
    expect(marker).toBeGreaterThan(install)
    // The marker is only written when every installed tool is really there.
    expect(commands[marker]).toMatch(/for tool in git rsync curl jq tar; do command -v .* exit 1; .*done; touch/)
    expect(commands.some((c) => c.includes("install -d -m 0755 -o 'crabbox' -g 'crabbox' '/work/crabbox'"))).toBe(true)
    expect(file('/etc/apt/apt.conf.d/80-crabbox-retries').content).toMatch(/Acquire::Retries "8"/)
    // Every shell snippet parses.
    for (const command of commands) expect(spawnSync('sh', ['-n', '-c', command]).status, command).toBe(0)
  })

  it('the retry helper retries a failing command until it succeeds', () => {
    const helper = join(scratch, 'crabbox-retry')
    writeFileSync(helper, file('/usr/local/bin/crabbox-retry').content)
    chmodSync(helper, 0o755)
    const counter = join(scratch, 'count')
    writeFileSync(counter, '0')
    // Fails once, then succeeds: one 5 s backoff in between.
    const flaky = `n=$(cat ${counter}); echo $((n + 1)) > ${counter}; [ "$n" -ge 1 ]`
    const result = spawnSync(helper, ['sh', '-c', flaky], { encoding: 'utf8' })
    expect(result.status).toBe(0)
    expect(execFileSync('cat', [counter], { encoding: 'utf8' }).trim()).toBe('2')
  }, 20_000)

  it('crabbox-ready fails, saying why, until the tools and the work root are there', () => {
    const ready = join(scratch, 'crabbox-ready')
    writeFileSync(ready, file('/usr/local/bin/crabbox-ready').content)
    chmodSync(ready, 0o755)
    const bin = join(scratch, 'bin')
    execFileSync('mkdir', ['-p', bin])
    for (const tool of ['git', 'rsync']) {
      writeFileSync(join(bin, tool), '#!/bin/sh\n')
      chmodSync(join(bin, tool), 0o755)
    }
    const run = () => spawnSync('/bin/sh', [ready], { encoding: 'utf8', env: { PATH: bin } })
    expect(run().status).toBe(1)
    expect(run().stderr).toMatch(/tar is not installed yet/)
    writeFileSync(join(bin, 'tar'), '#!/bin/sh\n')
    chmodSync(join(bin, 'tar'), 0o755)
    // Tools there, bootstrap not finished (no marker on this machine): still not ready.
    expect(run().stderr).toMatch(/bootstrap has not finished|work root/)
  })

  it('with desktop, browser and code: loopback VNC with a password made on the machine, Chromium, code-server', () => {
    const doc = parse(renderCloudInit({ ...options, desktop: true, browser: true, code: true })) as ReturnType<typeof rendered>
    const unit = (name: string) => doc.write_files.find((f) => f.path === `/etc/systemd/system/${name}.service`)!.content
    expect(unit('crabbox-xvfb')).toMatch(/^ExecStart=\/usr\/bin\/Xvfb :99 .*-nolisten tcp$/m)
    expect(unit('crabbox-desktop')).toMatch(/^ExecStart=\/usr\/bin\/openbox$/m)
    // VNC only on loopback, with the per-lease password file; every unit runs as the lease user.
    expect(unit('crabbox-x11vnc')).toMatch(/-localhost -rfbport 5900 -passwdfile \/var\/lib\/crabbox\/vnc\.password/)
    expect(unit('crabbox-code-server')).toMatch(/--bind-addr 127\.0\.0\.1:8080/)
    for (const name of ['crabbox-xvfb', 'crabbox-desktop', 'crabbox-x11vnc', 'crabbox-code-server'])
      expect(unit(name)).toMatch(/^User=crabbox$/m)
    const commands = doc.runcmd.map((c) => c[2])
    const password = commands.find((c) => c.includes('vnc.password'))!
    expect(password).toMatch(/\/dev\/urandom/)
    expect(password).toMatch(/chmod 0600/)
    expect(commands.some((c) => /apt-get install .*xvfb openbox x11vnc xdotool xclip/.test(c))).toBe(true)
    // ffmpeg: artifacts video records the display on the runner.
    expect(commands.some((c) => /apt-get install .*xvfb .*\bffmpeg\b/.test(c))).toBe(true)
    expect(commands.some((c) => /apt-get install .*chromium/.test(c))).toBe(true)
    expect(commands.some((c) => c.includes('browser.env'))).toBe(true)
    // The bootstrapped marker comes after every capability, and crabbox-ready waits for each.
    const marker = commands.findIndex((c) => c.includes('touch /var/lib/crabbox/bootstrapped'))
    expect(marker).toBeGreaterThan(commands.findIndex((c) => c.includes('crabbox-code-server')))
    const ready = doc.write_files.find((f) => f.path === '/usr/local/bin/crabbox-ready')!.content
    expect(ready).toMatch(/crabbox-x11vnc/)
    expect(ready).toMatch(/127\.0\.0\.1\/5900/)
    expect(ready).toMatch(/browser\.env/)
    expect(ready).toMatch(/code-server/)
    for (const command of commands) expect(spawnSync('sh', ['-n', '-c', command]).status, command).toBe(0)
    expect(spawnSync('sh', ['-n', '-c', ready]).status).toBe(0)
    // Without them, none of it.
    expect(renderCloudInit(options)).not.toMatch(/x11vnc|chromium|code-server|vnc\.password/)
  })

  it('refuses inputs that could escape the YAML or the shell', () => {
    expect(() => renderCloudInit({ ...options, sshPublicKey: `${key}\nruncmd: [reboot]` })).toThrow(/one OpenSSH public key line/)
    expect(() => renderCloudInit({ ...options, sshUser: 'root; reboot' })).toThrow(/ssh user/)
    expect(() => renderCloudInit({ ...options, sshFallbackPorts: ['22; reboot'] })).toThrow(/port/)
    expect(() => renderCloudInit({ ...options, workRoot: "/work/'x'" })).toThrow(/workRoot/)
    expect(() => renderCloudInit({ ...options, workRoot: 'relative' })).toThrow(/workRoot/)
  })

  it('reports host keys on the console in a form the CLI parses into known_hosts pins', () => {
    const report = rendered().runcmd[0][2]
    expect(report).toMatch(/crabbox-host-key: /)
    const console = [
      '[   12.3] cloud-init[812]: Cloud-init v. 24.1 running modules:config',
      'crabbox-host-key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOne',
      'crabbox-host-key: ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAA=',
      '-----BEGIN SSH HOST KEY FINGERPRINTS-----',
    ].join('\r\n')
    const keys = parseConsoleHostKeys(console)
    expect(keys).toEqual([
      { type: 'ssh-ed25519', key: 'AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOne' },
      { type: 'ecdsa-sha2-nistp256', key: 'AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAA=' },
    ])
    expect(knownHostsLines('198.51.100.7', ['2222', '22'], keys.slice(0, 1))).toEqual([
      '[198.51.100.7]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOne',
      '198.51.100.7 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOne',
    ])
  })
})
