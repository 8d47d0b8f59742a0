import type { Config } from '../config/schema.js'
import type { Progress } from '../ui/progress.js'
import type { SshTarget } from '../transport/ssh/types.js'

/** A lease as the run pipeline sees it, whatever provider or broker made it. */
export interface Lease {
  id: string
  slug: string
  provider: string
  /** How to reach the runner. */
  ssh: SshTarget
  workRoot: string
  serverType?: string
  state: string
  keep: boolean
  expiresAt?: string
  idleTimeoutSeconds?: number
  /** Provider-specific details kept for release (server ID, pid, workspace path...). */
  details: Record<string, unknown>
  /** What the runner was set up with: recorded by the broker, labelled on direct machines, declared for static hosts. */
  capabilities?: LeaseCapabilities
  /** A Windows runner (absent: a POSIX one): commands and sync go through encoded PowerShell, or wsl.exe in `wsl2` mode. */
  windows?: { mode: 'normal' | 'wsl2'; bootstrap: boolean }
}

export interface LeaseCapabilities {
  desktop: boolean
  browser: boolean
  code: boolean
}

export interface AcquireRequest {
  leaseId: string
  keep: boolean
  ttlSeconds: number
  idleTimeoutSeconds: number
  /** Path to the lease's private key; the `.pub` beside it is authorized on the runner. */
  privateKeyPath: string
  publicKey: string
  knownHostsPath: string
}

export interface ProviderContext {
  config: Config
  progress: Progress
}

/** Direct-mode providers: the CLI drives them without a broker. */
export interface DirectProvider {
  readonly name: string
  /** Managed boxes run /usr/local/bin/crabbox-ready; static hosts check sh, tar and git. */
  readonly readiness: 'managed' | 'static'
  acquire(request: AcquireRequest, context: ProviderContext): Promise<Lease>
  /** Resolves a lease by ID or slug; an ambiguous slug throws exit 4 listing the matches. */
  resolve(idOrSlug: string, context: ProviderContext): Promise<Lease>
  /** Idempotent: releasing an already released lease succeeds. */
  release(lease: Lease, context: ProviderContext): Promise<void>
  list(context: ProviderContext): Promise<Lease[]>
  /** Cloud machines: moves the expiry labels forward while the lease is in use (run calls it on the heartbeat cadence). */
  touch?(lease: Lease, context: ProviderContext): Promise<void>
  /** Delegated providers: the provider syncs the checkout and runs the command itself (`run` hands it the whole request). */
  delegated?: DelegatedRun
  /**
   * Delegated providers with SSH access of their own (Daytona's tokens): where `crabbox ssh`
   * connects for this lease, and how to revoke that access once the command is done.
   */
  sshAccess?(lease: Lease, context: ProviderContext): Promise<{ target: SshTarget; revoke(): Promise<void>; secretUser?: boolean }>
  /** Cloud machines: the provider's own status word (`initializing`, `pending`, `running`...), shown while the runner boots. */
  machineState?(lease: Pick<Lease, 'id' | 'provider' | 'details'>, context: ProviderContext): Promise<string | undefined>
}

/** What `run` hands a delegated provider: the lease, the command words and where the output goes. */
export interface DelegatedRunRequest {
  lease: Lease
  argv: string[]
  /** `--shell`: the words are one shell script. */
  shell: boolean
  debug: boolean
  /** `--json`: the result object owns stdout, so the command's stdout goes to stderr. */
  stdoutToStderr: boolean
  /** Aborted on Ctrl-C: the provider stops the remote command and resolves with its exit code. */
  signal: AbortSignal
  /** `archive` providers: the checkout (the sync manifest's files) as a gzipped tar; absent with `--no-sync`. */
  checkout?: CheckoutArchive
  /** `archive` providers: where the checkout goes on the lease (`<workRoot>/<leaseID>/<repoName>`). */
  workdir?: string
}

/** The checkout packed by crabbox for a provider that uploads it itself. */
export interface CheckoutArchive {
  files: number
  bytes: number
  /** A fresh `.tar.gz` stream of the files; `done` settles once every file was read. */
  open(): { stream: NodeJS.ReadableStream; done: Promise<void> }
}

export interface DelegatedRun {
  /**
   * `delegated`: the provider copies the checkout its own way (crabbox's sync does not run);
   * `archive`: crabbox packs the checkout and hands it over (`checkout`) for the provider to upload.
   */
  sync: 'delegated' | 'archive'
  /** Runs the command on the lease, output streamed; resolves with the remote exit code. */
  runDelegated(request: DelegatedRunRequest, context: ProviderContext): Promise<number>
}
