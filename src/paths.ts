import { homedir } from 'node:os'
import { join } from 'node:path'

/**
 * Where crabbox keeps its files. Everything honours the XDG variables so tests
 * (and users) can point crabbox at a throwaway home.
 */
const env = () => process.env

/** `env` lets the config loader resolve paths for an environment other than this process's (tests). */
function userConfigDir(environment: NodeJS.ProcessEnv = env()): string {
  const home = environment.HOME || homedir()
  return join(environment.XDG_CONFIG_HOME || join(home, '.config'), 'crabbox')
}

/** The user config file: `CRABBOX_CONFIG` when set, else `<config dir>/config.yaml`. */
export function userConfigPath(environment: NodeJS.ProcessEnv = env()): string {
  return environment.CRABBOX_CONFIG || join(userConfigDir(environment), 'config.yaml')
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
