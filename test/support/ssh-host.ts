import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { appendFile, chmod, chown, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { pidAlive, pidRunning, processTable } from './processes.js'

/**
 * A real OpenSSH sshd in a network namespace of its own, reached from the root
 * namespace over a veth pair. Each host gets its own /30 from 10.251.0.0/16, its
 * own host keys, its own authorized_keys and its own home for the shared
 * `crabbox` user: `ip netns exec` bind-mounts /etc/netns/<name>/passwd over
 * /etc/passwd, so inside the namespace `crabbox` has a per-host $HOME.
 */
export interface SshHostOptions {
  ports?: number[]
  maxSessions?: number
  name?: string
  /**
   * Absolute directories (e.g. /usr/local/bin) that this host sees as its own empty copy, bind
   * mounted in its mount namespace for sshd and run(): tests that play cloud-init write there
   * (through path()) instead of the machine's real directory, which parallel tests share.
   */
  privateDirs?: string[]
  /**
   * More login names for the runner user in this host only (same uid, gid and home), e.g.
   * `ec2-user` for a stand-in Mac: added to its own /etc/passwd and to AllowUsers.
   */
  userAliases?: string[]
}

export interface SshHost {
  name: string
  address: string
  ports: number[]
  user: string
  home: string
  privateKeyPath: string
  publicKey: string
  hostKeyFingerprint: string
  /** sshd's public host key as OpenSSH writes it, without comment (`ssh-ed25519 AAAA…`). */
  hostPublicKey: string
  authorize(publicKeyLine: string): Promise<void>
  run(command: string): Promise<{ code: number; stdout: string; stderr: string }>
  /** Where, seen from the test process, a path under one of privateDirs lives for this host. */
  path(hostPath: string): string
  /** Processes in this host's namespace (sshd, sessions, what they started): never another host's. */
  processes(): Promise<Array<{ pid: number; command: string }>>
  /** Kills this host's SSH sessions and everything they started, leaving its sshd listening. */
  killSessions(): Promise<void>
  restart(options?: { ports?: number[]; newHostKeys?: boolean }): Promise<void>
  stop(): Promise<void>
  /**
   * A second address for this host (a /32 on its veth, routed to it from the root namespace),
   * e.g. a stand-in for a tailnet address; sshd listens on every address.
   */
  addAddress(address: string): Promise<void>
  /** Takes that address off the host: connections to it then go unanswered (the route stays). */
  removeAddress(address: string): Promise<void>
}

const USER = 'crabbox'
const PREFIX = 'cbx'
const STATE_ROOT = '/tmp/cbx-sshhost'
const SLOTS = join(STATE_ROOT, 'slots')
// 10.251.0.0/16 cut into /30s: slot s owns 10.251.0.0 + 4s (.1 root side, .2 host side).
const SLOT_COUNT = 16_384

const exec = promisify(execFile)

interface Exec {
  code: number
  stdout: string
  stderr: string
}

async function sh(file: string, args: string[]): Promise<Exec> {
  try {
    const { stdout, stderr } = await exec(file, args, { maxBuffer: 64 * 1024 * 1024 })
    return { code: 0, stdout, stderr }
  } catch (error) {
    const e = error as { code?: unknown; stdout?: string; stderr?: string; message: string }
    if (typeof e.code !== 'number') throw error
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? e.message }
  }
}

async function must(file: string, args: string[]): Promise<string> {
  const result = await sh(file, args)
  if (result.code !== 0) throw new Error(`${file} ${args.join(' ')} failed (${result.code}): ${result.stderr.trim()}`)
  return result.stdout
}

const slotAddress = (slot: number, last: 1 | 2) => `10.251.${(slot * 4) >> 8}.${((slot * 4) & 255) + last}`
const vethRoot = (slot: number) => `${PREFIX}${slot}r`
const vethHost = (slot: number) => `${PREFIX}${slot}h`
const homeOf = (name: string) => `/home/${USER}-${name}`
const etcOf = (name: string) => `/etc/netns/${name}`

/** Synchronous teardown of everything one host owns; safe to repeat, used by stop() and the exit hook. */
function teardownSync(name: string, slot: number, dir: string): void {
  const quiet = { stdio: 'ignore' as const }
  try {
    const pids = execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    for (const pid of pids.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL')
      } catch {}
    }
  } catch {}
  try {
    execFileSync('ip', ['netns', 'delete', name], quiet)
  } catch {}
  try {
    execFileSync('ip', ['link', 'delete', vethRoot(slot)], quiet)
  } catch {}
  for (const path of [etcOf(name), homeOf(name), dir]) rmSync(path, { recursive: true, force: true })
  rmSync(join(SLOTS, String(slot)), { recursive: true, force: true })
}

let swept = false
/**
 * Removes hosts left behind by processes that died without cleaning up (killed
 * test runs): namespace, veth, sshd, home, files. sshHost() runs it once per process.
 */
export function sweepStaleHosts(): void {
  swept = true
  mkdirSync(SLOTS, { recursive: true })
  for (const entry of readdirSync(SLOTS)) {
    if (!/^\d+$/.test(entry)) continue
    let owner: { pid: number; name: string; dir: string }
    try {
      owner = JSON.parse(readFileSync(join(SLOTS, entry, 'owner.json'), 'utf8'))
    } catch {
      continue // being created right now, or already gone
    }
    if (pidAlive(owner.pid)) continue
    // Only the process that wins the rename reclaims the slot.
    const claimed = join(SLOTS, `${entry}.reclaim-${process.pid}`)
    try {
      renameSync(join(SLOTS, entry), claimed)
    } catch {
      continue
    }
    teardownSync(owner.name, Number(entry), owner.dir)
    rmSync(claimed, { recursive: true, force: true })
  }
  // Namespaces named cbx-<pid>-... whose process is gone (e.g. the slot dir was lost).
  try {
    const list = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    for (const line of list.split('\n')) {
      const match = /^(cbx-(\d+)-(\d+)\S*)/.exec(line)
      if (match && !pidAlive(Number(match[2]))) teardownSync(match[1], Number(match[3]), '/nonexistent')
    }
  } catch {}
}

async function claimSlot(name: (slot: number) => string, dir: string): Promise<number> {
  const used = await must('ip', ['-4', '-o', 'addr'])
  const start = (process.pid * 7 + Math.floor(Math.random() * SLOT_COUNT)) % SLOT_COUNT
  for (let i = 0; i < SLOT_COUNT; i++) {
    const slot = (start + i) % SLOT_COUNT
    if (used.includes(` ${slotAddress(slot, 1)}/`) || used.includes(` ${slotAddress(slot, 2)}/`)) continue
    try {
      mkdirSync(join(SLOTS, String(slot))) // atomic: exactly one process gets each slot
    } catch {
      continue
    }
    writeFileSync(join(SLOTS, String(slot), 'owner.json'), JSON.stringify({ pid: process.pid, name: name(slot), dir }))
    return slot
  }
  throw new Error('sshHost: no free test subnet in 10.251.0.0/16')
}

let userReady: Promise<{ uid: number; gid: number }> | undefined
/** The shared runner account; created once per machine under a lock, since workers race for it. */
function ensureUser(): Promise<{ uid: number; gid: number }> {
  userReady ??= (async () => {
    await mkdir(STATE_ROOT, { recursive: true })
    // A fresh account is locked ('!'); sshd without PAM refuses locked accounts, '*' is "no password".
    // usermod and useradd replace /etc/passwd with a new file even when nothing changes, and that
    // detaches the per-host passwd bind mount in every live host's namespace (its sessions would
    // get $HOME=/home/crabbox), so they run only when there is something to change.
    const script = [
      `id -u ${USER} >/dev/null 2>&1 || useradd --create-home --shell /bin/sh ${USER}`,
      `[ "$(getent shadow ${USER} | cut -d: -f2)" = '*' ] || usermod -p '*' ${USER}`,
      'mkdir -p /run/sshd',
    ].join('; ')
    await must('flock', [join(STATE_ROOT, 'user.lock'), 'sh', '-c', script])
    const uid = Number((await must('id', ['-u', USER])).trim())
    const gid = Number((await must('id', ['-g', USER])).trim())
    return { uid, gid }
  })()
  return userReady
}

function sshdConfig(dir: string, ports: number[], maxSessions: number, aliases: string[] = []): string {
  return [
    ...ports.map((port) => `Port ${port}`),
    'ListenAddress 0.0.0.0',
    `HostKey ${join(dir, 'ssh_host_ed25519_key')}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    `AllowUsers ${[USER, ...aliases].join(' ')}`,
    'PermitRootLogin no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PubkeyAuthentication yes',
    'UsePAM no',
    'UseDNS no',
    // authorized_keys lives in a root-owned temp dir, not under the user's home.
    'StrictModes no',
    `MaxSessions ${maxSessions}`,
    'MaxStartups 200',
    'PrintMotd no',
    'PrintLastLog no',
    'AllowTcpForwarding yes',
    'Subsystem sftp internal-sftp',
    'LogLevel ERROR',
    '',
  ].join('\n')
}

async function fingerprint(publicKeyPath: string): Promise<string> {
  const line = await must('ssh-keygen', ['-l', '-E', 'sha256', '-f', publicKeyPath])
  return line.split(' ')[1]
}

function waitForPort(address: string, port: number, child: ChildProcess, deadline: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (child.exitCode !== null || child.signalCode !== null)
        return reject(new Error(`sshd exited (${child.exitCode ?? child.signalCode})`))
      const socket = connect({ host: address, port })
      socket.once('connect', () => {
        socket.destroy()
        resolve()
      })
      socket.once('error', () => {
        socket.destroy()
        if (Date.now() > deadline) reject(new Error(`sshd on ${address}:${port} did not come up`))
        else setTimeout(attempt, 10)
      })
    }
    attempt()
  })
}

const liveHosts = new Set<() => void>()
let exitHookInstalled = false
function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.once('exit', () => {
    for (const teardown of liveHosts) teardown()
  })
}

let counter = 0

// eslint-disable-next-line max-lines-per-function -- setup and teardown of one host read top to bottom, sharing its handles
export async function sshHost(options: SshHostOptions = {}): Promise<SshHost> {
  if (!swept) sweepStaleHosts()
  installExitHook()
  const { uid, gid } = await ensureUser()
  const label = options.name ? `-${options.name.replace(/[^a-zA-Z0-9]/g, '').slice(0, 16)}` : ''
  const dir = join(STATE_ROOT, `${process.pid}-${++counter}-${Math.random().toString(36).slice(2, 8)}`)
  // The slot is in the name, so names are unique even across worker threads sharing a pid.
  const nameOf = (slot: number) => `${PREFIX}-${process.pid}-${slot}${label}`
  const slot = await claimSlot(nameOf, dir)
  const name = nameOf(slot)
  const address = slotAddress(slot, 2)
  const home = homeOf(name)
  let ports = options.ports ?? [22]
  const maxSessions = options.maxSessions ?? 10
  let sshd: ChildProcess | undefined
  let stopped = false
  let sshdLog = ''

  const teardown = () => teardownSync(name, slot, dir)
  liveHosts.add(teardown)

  const netns = (args: string[]) => must('ip', ['netns', 'exec', name, ...args])
  const privateDirs = options.privateDirs ?? []
  const privateRoot = join(dir, 'root')
  // `ip netns exec` already gives each command a mount namespace of its own (slave to the
  // machine's), so bind mounts made in it stay with this host and vanish with the process.
  const inHost = (command: string[]): string[] => {
    if (!privateDirs.length) return ['netns', 'exec', name, ...command]
    const mounts = privateDirs.map((p) => `mount --bind ${join(privateRoot, p)} ${p}`).join(' && ')
    return ['netns', 'exec', name, 'sh', '-c', `${mounts} && exec "$@"`, 'sh', ...command]
  }
  const nsPids = async (): Promise<number[]> => {
    const result = await sh('ip', ['netns', 'pids', name])
    return result.stdout.split(/\s+/).filter(Boolean).map(Number)
  }

  const genHostKey = async () => {
    await rm(join(dir, 'ssh_host_ed25519_key'), { force: true })
    await rm(join(dir, 'ssh_host_ed25519_key.pub'), { force: true })
    await must('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `host-${name}`, '-f', join(dir, 'ssh_host_ed25519_key')])
    return fingerprint(join(dir, 'ssh_host_ed25519_key.pub'))
  }

  const hostPublicKey = async () =>
    (await readFile(join(dir, 'ssh_host_ed25519_key.pub'), 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ')

  const startSshd = async () => {
    await writeFile(join(dir, 'sshd_config'), sshdConfig(dir, ports, maxSessions, options.userAliases))
    sshdLog = ''
    const child = spawn('ip', inHost(['/usr/sbin/sshd', '-D', '-e', '-f', join(dir, 'sshd_config')]), {
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (sshdLog = (sshdLog + d).slice(-4000)))
    child.on('error', () => {})
    sshd = child
    const deadline = Date.now() + 15_000
    try {
      for (const port of ports) await waitForPort(address, port, child, deadline)
    } catch (error) {
      throw new Error(`${(error as Error).message}; sshd said: ${sshdLog.trim()}`, { cause: error })
    }
  }

  const stopSshd = async () => {
    const child = sshd
    sshd = undefined
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000)
    await exited
    clearTimeout(timer)
  }

  try {
    // sshd reads authorized_keys as the user, so the dir must be traversable; the private key itself is 0600.
    await mkdir(dir, { recursive: true, mode: 0o755 })
    await rm(home, { recursive: true, force: true })
    await mkdir(home, { mode: 0o755 })
    await chmod(home, 0o755)
    await chown(home, uid, gid)

    // Per-namespace /etc/passwd: the same accounts, with this host's home for the runner user.
    const passwd = (await readFile('/etc/passwd', 'utf8'))
      .split('\n')
      .map((line) => {
        const fields = line.split(':')
        if (fields[0] !== USER) return line
        fields[5] = home
        return fields.join(':')
      })
      .filter((line) => line !== '')
      .concat(
        (options.userAliases ?? []).map((alias) => `${alias}:x:${uid}:${gid}::${home}:/bin/sh`),
        '',
      )
      .join('\n')
    await mkdir(etcOf(name), { recursive: true })
    await writeFile(join(etcOf(name), 'passwd'), passwd)

    const keyPath = join(dir, 'id_ed25519')
    const [, hostFingerprint] = await Promise.all([
      must('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `client-${name}`, '-f', keyPath]),
      genHostKey(),
    ])
    await chmod(keyPath, 0o600)
    const publicKey = (await readFile(`${keyPath}.pub`, 'utf8')).trim()
    await writeFile(join(dir, 'authorized_keys'), `${publicKey}\n`, { mode: 0o644 })
    for (const p of privateDirs) {
      if (!p.startsWith('/')) throw new Error(`sshHost: privateDirs must be absolute, got ${p}`)
      await mkdir(p, { recursive: true }) // the mount point; stays empty on the machine itself
      await mkdir(join(privateRoot, p), { recursive: true, mode: 0o755 })
    }

    await must('ip', ['netns', 'add', name])
    await must('ip', ['link', 'delete', vethRoot(slot)]).catch(() => {})
    await must('ip', ['link', 'add', vethRoot(slot), 'type', 'veth', 'peer', 'name', vethHost(slot)])
    await must('ip', ['link', 'set', vethHost(slot), 'netns', name])
    await must('ip', ['addr', 'add', `${slotAddress(slot, 1)}/30`, 'dev', vethRoot(slot)])
    await must('ip', ['link', 'set', vethRoot(slot), 'up'])
    await netns(['sh', '-c', `ip link set lo up && ip addr add ${address}/30 dev ${vethHost(slot)} && ip link set ${vethHost(slot)} up`])
    await startSshd()

    const host: SshHost = {
      name,
      address,
      get ports() {
        return ports
      },
      user: USER,
      home,
      privateKeyPath: keyPath,
      publicKey,
      hostKeyFingerprint: hostFingerprint,
      hostPublicKey: await hostPublicKey(),
      async authorize(publicKeyLine) {
        await appendFile(join(dir, 'authorized_keys'), `${publicKeyLine.trim()}\n`)
      },
      async run(command) {
        return sh('ip', inHost(['sh', '-c', command]))
      },
      path(hostPath) {
        if (!privateDirs.some((p) => hostPath === p || hostPath.startsWith(`${p}/`)))
          throw new Error(`sshHost: ${hostPath} is not under privateDirs`)
        return join(privateRoot, hostPath)
      },
      async processes() {
        return processTable(await nsPids()).map(({ pid, command }) => ({ pid, command }))
      },
      async killSessions() {
        const listener = sshd?.pid
        const killed: number[] = []
        for (const pid of await nsPids()) {
          if (pid === listener) continue
          try {
            process.kill(pid, 'SIGKILL')
            killed.push(pid)
          } catch {}
        }
        // SIGKILL is delivered when the process next runs: on a busy machine it is briefly still there.
        for (const deadline = Date.now() + 5_000; Date.now() < deadline && killed.some(pidRunning);)
          await new Promise((r) => setTimeout(r, 20))
      },
      async addAddress(extra) {
        await netns(['ip', 'addr', 'add', `${extra}/32`, 'dev', vethHost(slot)])
        await must('ip', ['route', 'replace', `${extra}/32`, 'dev', vethRoot(slot)])
      },
      async removeAddress(extra) {
        await netns(['ip', 'addr', 'del', `${extra}/32`, 'dev', vethHost(slot)])
      },
      async restart(restartOptions = {}) {
        if (stopped) throw new Error(`sshHost ${name} is stopped`)
        await stopSshd()
        if (restartOptions.ports) ports = restartOptions.ports
        if (restartOptions.newHostKeys) {
          host.hostKeyFingerprint = await genHostKey()
          host.hostPublicKey = await hostPublicKey()
        }
        await startSshd()
      },
      async stop() {
        if (stopped) return
        stopped = true
        await stopSshd()
        teardown()
        liveHosts.delete(teardown)
      },
    }
    return host
  } catch (error) {
    await stopSshd().catch(() => {})
    teardown()
    liveHosts.delete(teardown)
    throw error
  }
}
