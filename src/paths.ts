import { existsSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'

/**
 * Where crabbox keeps its files. Everything honours the XDG variables so tests
 * (and users) can point crabbox at a throwaway home.
 */
const env = () => process.env

/** Where the user config lives, and why: `config path` shows it, the loader reads it, `login` writes it. */
export interface UserConfigLocation {
  /** The user config file crabbox reads and writes. */
  path: string
  /**
   * `CRABBOX_CONFIG` (the variable names the only config file), `macos` (`~/Library/Application
   * Support/crabbox`), `macos-xdg` (macOS, but only `~/.config/crabbox` has a config file) or `xdg`.
   */
  source: 'CRABBOX_CONFIG' | 'macos' | 'macos-xdg' | 'xdg'
  /** Another user config file read before `path` (macOS: `~/.config/crabbox/config.yaml` when both exist). */
  alsoRead?: string
}

export interface PlatformOptions {
  /** `process.platform` unless a test says otherwise. */
  platform?: NodeJS.Platform
  /** `existsSync` unless a test says otherwise. */
  exists?: (path: string) => boolean
}

/** `$XDG_CONFIG_HOME/crabbox`, else `~/.config/crabbox`. */
const xdgConfigDir = (environment: NodeJS.ProcessEnv) =>
  join(environment.XDG_CONFIG_HOME || join(environment.HOME || homedir(), '.config'), 'crabbox')

/** macOS: `~/Library/Application Support/crabbox`. */
const macConfigDir = (environment: NodeJS.ProcessEnv) => join(environment.HOME || homedir(), 'Library', 'Application Support', 'crabbox')

/**
 * The user config folder (config file, per-lease keys): on macOS `~/Library/Application Support/crabbox`,
 * unless only `~/.config/crabbox` exists (a setup from before); elsewhere `$XDG_CONFIG_HOME/crabbox`.
 */
function userConfigDir(environment: NodeJS.ProcessEnv = env(), options: PlatformOptions = {}): string {
  const platform = options.platform ?? process.platform
  if (platform !== 'darwin') return xdgConfigDir(environment)
  const exists = options.exists ?? existsSync
  const mac = macConfigDir(environment)
  return !exists(mac) && exists(xdgConfigDir(environment)) ? xdgConfigDir(environment) : mac
}

/**
 * The user config file: `CRABBOX_CONFIG` when set; on macOS `~/Library/Application Support/crabbox/config.yaml`
 * (with `~/.config/crabbox/config.yaml` read too: before it when both exist, instead of it when only that one does);
 * elsewhere `$XDG_CONFIG_HOME/crabbox/config.yaml`.
 */
export function userConfigLocation(environment: NodeJS.ProcessEnv = env(), options: PlatformOptions = {}): UserConfigLocation {
  if (environment.CRABBOX_CONFIG) return { path: environment.CRABBOX_CONFIG, source: 'CRABBOX_CONFIG' }
  const platform = options.platform ?? process.platform
  const xdg = join(xdgConfigDir(environment), 'config.yaml')
  if (platform !== 'darwin') return { path: xdg, source: 'xdg' }
  const exists = options.exists ?? existsSync
  const mac = join(macConfigDir(environment), 'config.yaml')
  if (exists(mac)) return { path: mac, source: 'macos', ...(exists(xdg) ? { alsoRead: xdg } : {}) }
  return exists(xdg) ? { path: xdg, source: 'macos-xdg' } : { path: mac, source: 'macos' }
}

/** The user config file (`userConfigLocation(...).path`). */
export function userConfigPath(environment: NodeJS.ProcessEnv = env(), options: PlatformOptions = {}): string {
  return userConfigLocation(environment, options).path
}

export function stateDir(): string {
  return join(env().XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'crabbox')
}

/** Sockets live here: `$XDG_RUNTIME_DIR/crabbox`, else under the state dir. */
export function runtimeDir(): string {
  const runtime = env().XDG_RUNTIME_DIR
  return runtime ? join(runtime, 'crabbox') : join(stateDir(), 'run')
}

/** Per-lease SSH key and known_hosts: `<config dir>/testboxes/<leaseID>/`. */
export function leaseKeyDir(leaseId: string): string {
  return join(userConfigDir(), 'testboxes', leaseId)
}
