/**
 * Target OS and Windows-mode names with the aliases crabbox accepts for them, shared by the
 * CLI's config (files, env, flags) and the broker's lease request check.
 */
export const TARGET_ALIASES: Readonly<Record<string, 'linux' | 'macos' | 'windows'>> = {
  linux: 'linux',
  ubuntu: 'linux',
  macos: 'macos',
  mac: 'macos',
  darwin: 'macos',
  osx: 'macos',
  windows: 'windows',
  win: 'windows',
}

export const WINDOWS_MODE_ALIASES: Readonly<Record<string, 'normal' | 'wsl2'>> = {
  normal: 'normal',
  native: 'normal',
  powershell: 'normal',
  ps: 'normal',
  wsl2: 'wsl2',
  wsl: 'wsl2',
}
