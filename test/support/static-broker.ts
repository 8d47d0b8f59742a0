import { rmSync } from 'node:fs'
import { afterAll, beforeAll } from 'vitest'
import { startBroker, type BrokerHandle } from './broker.js'
import { cliHome, type CliHome } from './cli.js'
import { brokerApi } from './fixtures.js'
import { sshHost, type SshHost, type SshHostOptions } from './ssh-host.js'

export interface StaticBrokerOptions {
  /** The shared token the broker accepts and the CLI sends. */
  token: string
  /** Who the CLI and `api` act as. */
  owner: string
  /** The sshd hosts to start (default: one, with sshHost's defaults). */
  hosts?: SshHostOptions[]
  /** Names of the pool entries, given to the hosts in turn (default: one entry per host, named after it). */
  names?: string[]
  /** Extra fields of each pool entry (e.g. `hostKey`), from the host it names and all the hosts. */
  entry?: (host: SshHost, hosts: SshHost[], index: number) => Record<string, unknown>
  /** Broker settings on top of the token, the pool and a 1 s minimum lease time (e.g. CRABBOX_ADMIN_TOKEN; tests use idle timeouts of a few seconds). */
  env?: Record<string, string>
  /**
   * Runs first in beforeAll: a port to start the broker on and settings known only then
   * (e.g. a proxy in front of the broker, named in CRABBOX_PUBLIC_URL).
   */
  prepare?: () => Promise<{ port?: number; env?: Record<string, string> }>
}

/** `crabbox broker dev` with a static pool of real sshd hosts, and a CLI home to use it from. */
export interface StaticBroker {
  readonly broker: BrokerHandle
  readonly hosts: SshHost[]
  /** The first host. */
  readonly host: SshHost
  readonly home: CliHome
  readonly token: string
  readonly owner: string
  /** The broker's HTTP API as `owner`; any non-2xx answer fails the test. */
  api: (method: string, path: string, body?: unknown) => Promise<any>
  /** The environment of a CLI run through the broker onto the pool (no agent), with `extra` on top. */
  cliEnv(extra?: Record<string, string | undefined>): Record<string, string | undefined>
}

/**
 * Starts the broker and its hosts before the tests of the enclosing file or describe block
 * and stops them after; the returned object is filled in once they run.
 */
export function brokerWithStaticHosts(options: StaticBrokerOptions): StaticBroker {
  let broker: BrokerHandle | undefined
  let hosts: SshHost[] = []
  let home: CliHome | undefined
  const ready = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`brokerWithStaticHosts: ${what} is used before beforeAll ran`)
    return value
  }

  beforeAll(async () => {
    const prepared = (await options.prepare?.()) ?? {}
    hosts = await Promise.all((options.hosts ?? [{}]).map((hostOptions) => sshHost(hostOptions)))
    const names = options.names ?? hosts.map((h) => h.name)
    const pool = names.map((name, i) => {
      const h = hosts[i % hosts.length]
      return { name, host: h.address, port: h.ports[0], user: h.user, workRoot: `${h.home}/work`, ...options.entry?.(h, hosts, i) }
    })
    broker = await startBroker({
      ...(prepared.port !== undefined ? { port: prepared.port } : {}),
      env: {
        CRABBOX_SHARED_TOKEN: options.token,
        CRABBOX_STATIC_POOL: JSON.stringify(pool),
        CRABBOX_MIN_LEASE_SECONDS: '1',
        ...options.env,
        ...prepared.env,
      },
    })
    home = cliHome()
  })

  afterAll(async () => {
    await broker?.stop()
    await Promise.all(hosts.map((h) => h.stop()))
    if (home) rmSync(home.dir, { recursive: true, force: true })
  })

  return {
    get broker() {
      return ready(broker, 'the broker')
    },
    get hosts() {
      return hosts
    },
    get host() {
      return ready(hosts[0], 'the host')
    },
    get home() {
      return ready(home, 'the CLI home')
    },
    token: options.token,
    owner: options.owner,
    api: brokerApi(() => ready(broker, 'the broker').url, { authorization: `Bearer ${options.token}`, 'x-crabbox-owner': options.owner }),
    cliEnv(extra = {}) {
      return {
        CRABBOX_COORDINATOR: ready(broker, 'the broker').url,
        CRABBOX_COORDINATOR_TOKEN: options.token,
        CRABBOX_OWNER: options.owner,
        CRABBOX_PROVIDER: 'static',
        CRABBOX_SSH_KEY: ready(hosts[0], 'the host').privateKeyPath,
        CRABBOX_NO_AGENT: '1',
        NODE_EXTRA_CA_CERTS: undefined,
        ...extra,
      }
    },
  }
}
