import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { MACOS_DEFAULTS, renderMacUserData } from '../../src/cloud/macos-bootstrap.js'
import {
  WINDOWS_DEFAULTS,
  WINDOWS_READY_SCRIPT,
  renderEc2LaunchUserData,
  renderWindowsBootstrap,
} from '../../src/cloud/windows-bootstrap.js'

const RSA_KEY = 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 crabbox cbx_0123456789ab'
const base = { sshPublicKey: RSA_KEY, sshPort: '2222', sshFallbackPorts: ['22'], workRoot: WINDOWS_DEFAULTS.workRoot }

describe('EC2Launch v2 user data', () => {
  it('is one run-once PowerShell task that turns on OpenSSH with the lease key for administrators', () => {
    const text = renderEc2LaunchUserData(RSA_KEY)
    // The form EC2Launch v2 documents (the raw scalar, not a YAML float).
    expect(text.startsWith('version: 1.0\ntasks:\n')).toBe(true)
    const data = parse(text) as {
      tasks: { task: string; inputs: { frequency: string; type: string; runAs: string; content: string }[] }[]
    }
    expect(data.tasks).toHaveLength(1)
    expect(data.tasks[0].task).toBe('executeScript')
    const [input] = data.tasks[0].inputs
    expect([input.frequency, input.type, input.runAs]).toEqual(['once', 'powershell', 'localSystem'])
    const lines = input.content.split('\n')
    expect(lines).toContain("if ($cap.State -ne 'Installed') { Add-WindowsCapability -Online -Name $cap.Name | Out-Null }")
    expect(lines).toContain(`Set-Content -Encoding ascii -Path $keys -Value '${RSA_KEY}'`)
    expect(lines).toContain("icacls.exe $keys /inheritance:r /grant 'Administrators:F' /grant 'SYSTEM:F' | Out-Null")
    expect(lines).toContain('Set-Service -Name sshd -StartupType Automatic')
    // Only OpenSSH: the rest is the bootstrap over SSH.
    expect(input.content).not.toMatch(/git|wsl|2222/i)
  })

  it('refuses anything but one public key line', () => {
    expect(() => renderEc2LaunchUserData("ssh-rsa AAAA x'; Remove-Item C:\\ -Recurse")).toThrow(/one OpenSSH public key line/)
    expect(() => renderEc2LaunchUserData(`${RSA_KEY}\nssh-rsa AAAA`)).toThrow()
  })
})

describe('Windows PowerShell bootstrap', () => {
  it('sets the SSH ports once each, with password login off and a firewall rule per port', () => {
    const script = renderWindowsBootstrap({ ...base, windowsMode: 'normal' })
    expect(script.endsWith("Write-Output 'crabbox-bootstrap: ready'\r\n")).toBe(true)
    expect(script).toContain("$head = 'Port 2222\r\nPort 22\r\nPasswordAuthentication no\r\n'")
    expect(script.match(/New-NetFirewallRule -Name 'crabbox-ssh-\d+'/g)).toEqual([
      "New-NetFirewallRule -Name 'crabbox-ssh-2222'",
      "New-NetFirewallRule -Name 'crabbox-ssh-22'",
    ])
    expect(script).toContain("New-Item -ItemType Directory -Force -Path 'C:\\ProgramData\\crabbox', 'C:\\crabbox' | Out-Null")
    expect(script).toContain(`Invoke-WebRequest -UseBasicParsing -Uri '${WINDOWS_DEFAULTS.gitInstallerUrl}' -OutFile $installer`)
    expect(script).not.toContain('wsl.exe')
    expect(WINDOWS_READY_SCRIPT).toBe("& 'C:\\ProgramData\\crabbox\\crabbox-ready.ps1'; exit $LASTEXITCODE")
  })

  it('in WSL2 mode turns the features on, restarts when asked, and imports the Ubuntu distribution', () => {
    const script = renderWindowsBootstrap({ ...base, windowsMode: 'wsl2' })
    expect(script).toContain("foreach ($feature in 'Microsoft-Windows-Subsystem-Linux', 'VirtualMachinePlatform') {")
    expect(script).toContain("if ($restart) { Write-Output 'crabbox-bootstrap: restart'; Restart-Computer -Force; exit 0 }")
    expect(script).toContain("wsl.exe --import crabbox 'C:\\ProgramData\\crabbox\\wsl' $rootfs --version 2")
    expect(script).toContain(`-Uri '${WINDOWS_DEFAULTS.wslRootfsUrl}'`)
    expect(script).toContain('mkdir -p /work/crabbox')
    // The restart comes before anything that needs the features.
    expect(script.indexOf('Restart-Computer')).toBeLessThan(script.indexOf('wsl.exe --update'))
    expect(script).toContain(
      "wsl.exe --distribution crabbox --exec sh -c ''command -v git && command -v tar && test -w /work/crabbox'' | Out-Null",
    )
  })

  it('refuses settings that could break out of the script', () => {
    expect(() => renderWindowsBootstrap({ ...base, windowsMode: 'normal', workRoot: "C:\\x'; Remove-Item" })).toThrow(/workRoot/)
    expect(() => renderWindowsBootstrap({ ...base, windowsMode: 'normal', workRoot: '/work/crabbox' })).toThrow(/workRoot/)
    expect(() => renderWindowsBootstrap({ ...base, windowsMode: 'normal', sshPort: '22; x' })).toThrow(/ssh port/)
    expect(() => renderWindowsBootstrap({ ...base, windowsMode: 'normal', gitInstallerUrl: "https://x/'a" })).toThrow(/https URL/)
  })
})

describe('macOS user data', () => {
  it('is valid sh using BSD tools only, with the work root under the home folder', () => {
    const script = renderMacUserData({ sshUser: MACOS_DEFAULTS.sshUser, workRoot: MACOS_DEFAULTS.workRoot, desktop: true })
    expect(spawnSync('sh', ['-n'], { input: script }).status).toBe(0)
    expect(script).toContain('root=/Users/ec2-user/crabbox')
    expect(script).toContain('pw=$(LC_ALL=C tr -dc A-Za-z0-9 </dev/urandom | head -c 16)')
    expect(script).toContain('dscl . -passwd "/Users/$user" "$pw"')
    expect(script).not.toMatch(/apt-get|systemctl|useradd|stat -c|sha256sum|readlink -f|sed -i /)
    expect(renderMacUserData({ sshUser: 'ec2-user', workRoot: MACOS_DEFAULTS.workRoot })).not.toContain('screensharing')
    expect(() => renderMacUserData({ sshUser: 'ec2-user', workRoot: '/Users/x; rm -rf /' })).toThrow(/workRoot/)
  })

  it('writes a crabbox-ready that checks git, tar and the work root', () => {
    const dir = mkdtempSync(join(tmpdir(), 'crabbox-mac-'))
    try {
      const script = renderMacUserData({ sshUser: 'ec2-user', workRoot: dir })
      const ready = /<<'CRABBOX_READY'\n([\s\S]*?)\nCRABBOX_READY\n/.exec(script)![1]
      expect(spawnSync('sh', ['-c', ready], { encoding: 'utf8' }).status).toBe(0)
      rmSync(dir, { recursive: true })
      const missing = spawnSync('sh', ['-c', ready], { encoding: 'utf8' })
      expect([missing.status, missing.stdout]).toEqual([1, 'missing: work root\n'])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
