import { rmSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cliHome, runCli, type CliHome } from '../support/cli.js'
import { git, gitRepo } from '../support/fixtures.js'
import { sshHost, type SshHost } from '../support/ssh-host.js'

/**
 * `crabbox run --provider ssh --target macos` against a Linux sshd test host standing in for
 * a Mac. What it proves: the run needs nothing but the POSIX runner scripts crabbox sends (sync,
 * probe, apply), and the work root is `crabbox` under the user's home folder (`/Users/<user>`,
 * a private folder of this host). What it does not: that macOS's own BSD tools run them; the
 * scripts' freedom from GNU-only tools and flags is checked in test/unit/sync-bsd.test.ts.
 */

describe('run on a static Mac (a Linux sshd host standing in)', () => {
  let host: SshHost
  let home: CliHome
  let repo: string
  beforeAll(async () => {
    host = await sshHost({ name: 'mac-run', privateDirs: ['/Users/crabbox'] })
    await host.run(`chown ${host.user} /Users/${host.user}`)
    home = cliHome()
    repo = gitRepo('crabbox-mac-repo-', { 'hello.txt': 'hello from the checkout\n', 'gone.txt': 'soon gone\n' })
  }, 60_000)
  afterAll(async () => {
    await host?.stop()
    if (repo) rmSync(repo, { recursive: true, force: true })
  })

  const run = (args: string[]) =>
    runCli(['run', '--provider', 'ssh', '--static-host', host.address, '--target', 'macos', '--keep', ...args], {
      home,
      cwd: repo,
      env: { CRABBOX_SSH_KEY: host.privateKeyPath, CRABBOX_NO_AGENT: '1' },
      timeoutMs: 90_000,
    })

  it('syncs into /Users/<user>/crabbox and runs there; a second run applies the changes', async () => {
    const first = await run(['--', 'sh', '-c', 'pwd; cat hello.txt; ls'])
    expect(first.code, first.stderr).toBe(0)
    const [pwd, ...rest] = first.stdout.trim().split('\n')
    expect(pwd).toMatch(new RegExp(`^/Users/${host.user}/crabbox/`))
    expect(rest).toEqual(['hello from the checkout', 'gone.txt', 'hello.txt'])

    writeFileSync(join(repo, 'hello.txt'), 'changed\n')
    unlinkSync(join(repo, 'gone.txt'))
    git(repo, 'add', '-A')
    const second = await run(['--', 'sh', '-c', 'pwd; cat hello.txt; ls'])
    expect(second.code, second.stderr).toBe(0)
    expect(second.stdout.trim().split('\n')).toEqual([pwd, 'changed', 'hello.txt'])
    // The lease's folder is there, under the home folder's work root.
    expect((await host.run(`ls /Users/${host.user}/crabbox`)).stdout.trim()).not.toBe('')
  })

  it('keeps the target with the claim: a later --id without --target still knows the Mac', async () => {
    const kept = await run(['--', 'true'])
    expect(kept.code, kept.stderr).toBe(0)
    const env = { CRABBOX_SSH_KEY: host.privateKeyPath, CRABBOX_NO_AGENT: '1' }
    const list = await runCli(['list', '--provider', 'ssh', '--json'], { home, cwd: repo, env })
    const [lease] = JSON.parse(list.stdout) as Array<{ id: string }>
    // A Linux runner would be asked for an X screenshot; a static Mac's screen is refused.
    const shot = await runCli(['screenshot', '--id', lease.id, '--output', join(repo, 'shot.png')], { home, cwd: repo, env })
    expect(shot.code).toBe(2)
    expect(shot.stderr).toContain("a static Mac's screen belongs to its owner")
  })
})
