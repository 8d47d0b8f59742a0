/**
 * Bootstrap for Windows runners (native and WSL2) in two steps, as the AWS
 * path runs them:
 *
 * 1. `renderEc2LaunchUserData`: EC2Launch v2 user data that only turns on the
 *    built-in OpenSSH server on port 22 with the lease key for Administrator
 *    (`administrators_authorized_keys`, readable by Administrators and SYSTEM
 *    only, as Windows OpenSSH requires).
 * 2. `renderWindowsBootstrap`: the PowerShell script crabbox then runs over SSH
 *    as Administrator, sent on stdin (it is longer than cmd.exe's command line;
 *    `powershellStdinCommand` in the CLI's `target-command.ts`). It is safe to
 *    run again: each step checks before it acts. It adds the primary and
 *    fallback SSH ports with a firewall rule each, turns password login off,
 *    makes the work root (`C:\crabbox`) and `C:\ProgramData\crabbox`, installs
 *    Git for Windows when git is missing, and writes
 *    `C:\ProgramData\crabbox\crabbox-ready.ps1`. WSL2 mode also turns on the
 *    WSL and virtual machine platform features and imports an Ubuntu 24.04
 *    root file system as the `crabbox` distribution with git, tar and the Linux
 *    work root. When a feature needs a restart, the script prints
 *    `crabbox-bootstrap: restart`, restarts the machine and is run again
 *    afterwards; it prints `crabbox-bootstrap: ready` when everything is done.
 *
 * Like `cloud-init.ts` it imports nothing and does no I/O: the broker and the
 * CLI render the same text.
 */

export interface WindowsBootstrapOptions {
  /** One OpenSSH public key line (AWS imports only RSA keys for Windows instances). */
  sshPublicKey: string
  sshPort: string
  sshFallbackPorts: string[]
  /** `C:\crabbox` by default. */
  workRoot: string
  windowsMode: 'normal' | 'wsl2'
  /** Where Git for Windows' silent installer is fetched from when git is missing. */
  gitInstallerUrl?: string
  /** The Ubuntu WSL root file system imported in WSL2 mode. */
  wslRootfsUrl?: string
}

export const WINDOWS_DEFAULTS = {
  workRoot: 'C:\\crabbox',
  stateDir: 'C:\\ProgramData\\crabbox',
  wslDistro: 'crabbox',
  wslWorkRoot: '/work/crabbox',
  gitInstallerUrl: 'https://github.com/git-for-windows/git/releases/download/v2.47.1.windows.1/Git-2.47.1-64-bit.exe',
  wslRootfsUrl: 'https://cloud-images.ubuntu.com/wsl/releases/24.04/current/ubuntu-noble-wsl-amd64-wsl.rootfs.tar.gz',
} as const

const keyPattern = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( [\w .@:-]*)?$/
const portPattern = /^[1-9][0-9]{0,4}$/
const windowsPathPattern = /^[A-Za-z]:\\[A-Za-z0-9._\\-]*$/
const urlPattern = /^https:\/\/[A-Za-z0-9._~:/?#@!$&()*+,;=%-]+$/

/** A PowerShell single-quoted string (the typographic quotes PowerShell also reads are doubled too). */
const ps = (value: string) => `'${value.replace(/['\u2018\u2019\u201a\u201b]/g, (quote) => quote + quote)}'`

function validate(options: WindowsBootstrapOptions): void {
  if (!keyPattern.test(options.sshPublicKey.trim())) throw new Error('sshPublicKey must be one OpenSSH public key line')
  for (const port of [options.sshPort, ...options.sshFallbackPorts])
    if (!portPattern.test(port) || Number(port) > 65535) throw new Error(`invalid ssh port ${JSON.stringify(port)}`)
  if (!windowsPathPattern.test(options.workRoot) || options.workRoot.includes('..'))
    throw new Error(`workRoot must be an absolute Windows path of [A-Za-z0-9._\\-], got ${JSON.stringify(options.workRoot)}`)
  for (const url of [options.gitInstallerUrl, options.wslRootfsUrl])
    if (url !== undefined && !urlPattern.test(url)) throw new Error(`not an https URL: ${JSON.stringify(url)}`)
}

/** The lines that put the key where Windows OpenSSH reads it for administrators, with the ACL it insists on. */
const authorizedKeyLines = (key: string) => [
  "$keys = 'C:\\ProgramData\\ssh\\administrators_authorized_keys'",
  "New-Item -ItemType Directory -Force -Path 'C:\\ProgramData\\ssh' | Out-Null",
  `Set-Content -Encoding ascii -Path $keys -Value ${ps(key.trim())}`,
  "icacls.exe $keys /inheritance:r /grant 'Administrators:F' /grant 'SYSTEM:F' | Out-Null",
]

/**
 * The account crabbox's key is installed for, per cloud: AWS's built-in
 * Administrator; on Azure the admin account the VM is created with (Azure
 * renames the built-in one to it).
 */
export const WINDOWS_ADMINS = { aws: 'Administrator', azure: 'crabadmin' } as const

/** The first stage on a new Windows machine (EC2Launch on AWS, the CustomScriptExtension on Azure). */
function firstStage(sshPublicKey: string): string[] {
  if (!keyPattern.test(sshPublicKey.trim())) throw new Error('sshPublicKey must be one OpenSSH public key line')
  return [
    "$ErrorActionPreference = 'Stop'",
    "$cap = Get-WindowsCapability -Online -Name 'OpenSSH.Server*' | Select-Object -First 1",
    "if ($cap.State -ne 'Installed') { Add-WindowsCapability -Online -Name $cap.Name | Out-Null }",
    ...authorizedKeyLines(sshPublicKey),
    'Set-Service -Name sshd -StartupType Automatic',
    'Start-Service sshd',
    "if (-not (Get-NetFirewallRule -Name 'crabbox-ssh-22' -ErrorAction SilentlyContinue)) { New-NetFirewallRule -Name 'crabbox-ssh-22' -DisplayName 'crabbox ssh 22' -Direction Inbound -Protocol TCP -LocalPort 22 -Action Allow | Out-Null }",
  ]
}

/** EC2Launch v2 user data: OpenSSH server on, key installed, port 22 open. Nothing else. */
export function renderEc2LaunchUserData(sshPublicKey: string): string {
  const script = firstStage(sshPublicKey)
  return [
    'version: 1.0',
    'tasks:',
    '  - task: executeScript',
    '    inputs:',
    '      - frequency: once',
    '        type: powershell',
    '        runAs: localSystem',
    '        content: |-',
    ...script.map((line) => `          ${line}`),
    '',
  ].join('\n')
}

/**
 * The same first stage as one command line for Azure's CustomScriptExtension
 * (`commandToExecute`): PowerShell with the script as base64 of its UTF-16LE
 * bytes. No Buffer: the broker renders it inside workerd too.
 */
export function windowsFirstStageCommand(sshPublicKey: string): string {
  const script = firstStage(sshPublicKey).join('\r\n')
  let binary = ''
  for (let i = 0; i < script.length; i++) {
    const unit = script.charCodeAt(i)
    binary += String.fromCharCode(unit & 0xff, unit >> 8)
  }
  return `powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand ${btoa(binary)}`
}

/** sshd on every crabbox port, password login off, a firewall rule per port. */
function sshLines(ports: string[]): string[] {
  return [
    "$config = 'C:\\ProgramData\\ssh\\sshd_config'",
    '$before = Get-Content -Raw -Path $config',
    "$text = $before -replace '(?m)^\\s*#?\\s*(Port|PasswordAuthentication)\\s.*\\r?\\n', ''",
    `$head = ${ps(ports.map((port) => `Port ${port}\r\n`).join('') + 'PasswordAuthentication no\r\n')}`,
    'if ($before -ne ($head + $text)) { Set-Content -Encoding ascii -NoNewline -Path $config -Value ($head + $text); Restart-Service sshd }',
    ...ports.map(
      (port) =>
        `if (-not (Get-NetFirewallRule -Name 'crabbox-ssh-${port}' -ErrorAction SilentlyContinue)) { New-NetFirewallRule -Name 'crabbox-ssh-${port}' -DisplayName 'crabbox ssh ${port}' -Direction Inbound -Protocol TCP -LocalPort ${port} -Action Allow | Out-Null }`,
    ),
  ]
}

function gitLines(url: string): string[] {
  return [
    "$gitExe = 'C:\\Program Files\\Git\\cmd\\git.exe'",
    'if (-not (Test-Path $gitExe)) {',
    "  $installer = Join-Path $env:TEMP 'crabbox-git.exe'",
    `  Invoke-WebRequest -UseBasicParsing -Uri ${ps(url)} -OutFile $installer`,
    "  Start-Process -Wait -FilePath $installer -ArgumentList '/VERYSILENT /NORESTART /NOCANCEL /SP- /SUPPRESSMSGBOXES'",
    '}',
    "$machinePath = [Environment]::GetEnvironmentVariable('Path', 'Machine')",
    "if ($machinePath -notlike '*C:\\Program Files\\Git\\cmd*') { [Environment]::SetEnvironmentVariable('Path', $machinePath + ';C:\\Program Files\\Git\\cmd', 'Machine') }",
  ]
}

function wslLines(rootfsUrl: string): string[] {
  const { stateDir, wslDistro, wslWorkRoot } = WINDOWS_DEFAULTS
  return [
    '$restart = $false',
    "foreach ($feature in 'Microsoft-Windows-Subsystem-Linux', 'VirtualMachinePlatform') {",
    '  $state = (Get-WindowsOptionalFeature -Online -FeatureName $feature).State',
    "  if ($state -ne 'Enabled') { $result = Enable-WindowsOptionalFeature -Online -FeatureName $feature -All -NoRestart; if ($result.RestartNeeded) { $restart = $true } }",
    '}',
    "if ($restart) { Write-Output 'crabbox-bootstrap: restart'; Restart-Computer -Force; exit 0 }",
    'wsl.exe --update | Out-Null',
    'wsl.exe --set-default-version 2 | Out-Null',
    `if (-not ((wsl.exe --list --quiet) -replace "\`0", '' | Where-Object { $_.Trim() -eq ${ps(wslDistro)} })) {`,
    `  $rootfs = Join-Path ${ps(stateDir)} 'ubuntu-rootfs.tar.gz'`,
    `  Invoke-WebRequest -UseBasicParsing -Uri ${ps(rootfsUrl)} -OutFile $rootfs`,
    `  wsl.exe --import ${wslDistro} ${ps(`${stateDir}\\wsl`)} $rootfs --version 2`,
    "  if ($LASTEXITCODE -ne 0) { throw 'wsl --import failed' }",
    '}',
    `wsl.exe --set-default ${wslDistro}`,
    `wsl.exe --distribution ${wslDistro} --user root --exec sh -c ${ps(`export DEBIAN_FRONTEND=noninteractive; command -v git >/dev/null && command -v tar >/dev/null || { apt-get update -q && apt-get install -y -q git tar ca-certificates; }; mkdir -p ${wslWorkRoot}`)}`,
    "if ($LASTEXITCODE -ne 0) { throw 'preparing the WSL distribution failed' }",
  ]
}

/** What `crabbox-ready.ps1` checks: the tools sync and runs use, and the work root. */
function readyScript(options: WindowsBootstrapOptions): string {
  const lines = [
    "$ErrorActionPreference = 'Stop'",
    "if (-not (Get-Command git.exe -ErrorAction SilentlyContinue) -and -not (Test-Path 'C:\\Program Files\\Git\\cmd\\git.exe')) { Write-Output 'missing: git'; exit 1 }",
    "if (-not (Get-Command tar.exe -ErrorAction SilentlyContinue)) { Write-Output 'missing: tar'; exit 1 }",
    `if (-not (Test-Path -LiteralPath ${ps(options.workRoot)})) { Write-Output 'missing: work root'; exit 1 }`,
  ]
  if (options.windowsMode === 'wsl2')
    lines.push(
      `wsl.exe --distribution ${WINDOWS_DEFAULTS.wslDistro} --exec sh -c 'command -v git && command -v tar && test -w ${WINDOWS_DEFAULTS.wslWorkRoot}' | Out-Null`,
      "if ($LASTEXITCODE -ne 0) { Write-Output 'missing: WSL distribution'; exit 1 }",
    )
  lines.push('exit 0')
  return lines.join('\r\n')
}

/** The PowerShell bootstrap run over SSH as Administrator; run again after the restart it may ask for. */
export function renderWindowsBootstrap(options: WindowsBootstrapOptions): string {
  validate(options)
  const { stateDir } = WINDOWS_DEFAULTS
  const ports = [...new Set([options.sshPort, ...options.sshFallbackPorts, '22'])]
  const lines = [
    "$ErrorActionPreference = 'Stop'",
    "$ProgressPreference = 'SilentlyContinue'",
    `New-Item -ItemType Directory -Force -Path ${ps(stateDir)}, ${ps(options.workRoot)} | Out-Null`,
    ...authorizedKeyLines(options.sshPublicKey),
    ...sshLines(ports),
    ...gitLines(options.gitInstallerUrl ?? WINDOWS_DEFAULTS.gitInstallerUrl),
    ...(options.windowsMode === 'wsl2' ? wslLines(options.wslRootfsUrl ?? WINDOWS_DEFAULTS.wslRootfsUrl) : []),
    `Set-Content -Encoding utf8 -Path ${ps(`${stateDir}\\crabbox-ready.ps1`)} -Value ${ps(readyScript(options))}`,
    `New-Item -ItemType File -Force -Path ${ps(`${stateDir}\\bootstrapped`)} | Out-Null`,
    "Write-Output 'crabbox-bootstrap: ready'",
  ]
  return `${lines.join('\r\n')}\r\n`
}

/** The readiness check crabbox runs over SSH (inside the encoded PowerShell line). */
export const WINDOWS_READY_SCRIPT = `& ${ps(`${WINDOWS_DEFAULTS.stateDir}\\crabbox-ready.ps1`)}; exit $LASTEXITCODE`
