import { WINDOWS_ADMINS, WINDOWS_DEFAULTS } from '../cloud/windows-bootstrap.js'
import type { Lease } from './types.js'

/**
 * What a lease on a Windows runner carries, for the providers that make or
 * claim one: the mode, whether crabbox bootstraps it over SSH (machines it
 * made) and where its work root is.
 */

/** The account the first stage and the bootstrap install the lease key for, per cloud. */
export const windowsSshUser = (provider: string): string => (provider === 'azure' ? WINDOWS_ADMINS.azure : WINDOWS_ADMINS.aws)

/** `C:\crabbox` natively; `/work/crabbox` inside the WSL2 distribution. */
export const windowsWorkRoot = (mode: 'normal' | 'wsl2'): string =>
  mode === 'wsl2' ? WINDOWS_DEFAULTS.wslWorkRoot : WINDOWS_DEFAULTS.workRoot

/** A runner crabbox made (and so bootstraps), from the mode it was labelled or recorded with. */
export const windowsRunner = (mode: string | undefined): NonNullable<Lease['windows']> => ({
  mode: mode === 'wsl2' ? 'wsl2' : 'normal',
  bootstrap: true,
})
