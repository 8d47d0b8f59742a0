/**
 * Which providers can give a lease each target OS in this version, so a
 * refusal names the ones that can. Pure: read by the CLI's direct providers and
 * the broker's cloud providers alike.
 *
 * Windows: the command lines (encoded PowerShell, wsl.exe), the Windows-safe
 * sync and the bootstrap are built and unit-tested, but no provider makes or
 * accepts Windows runners yet (docs/providers/targets.md).
 */

export type TargetOS = 'linux' | 'macos' | 'windows'

export const TARGET_PROVIDERS: Readonly<Record<TargetOS, readonly string[]>> = {
  linux: ['hetzner', 'aws', 'ssh', 'local (on a Linux machine)'],
  macos: ['ssh (an existing Mac)', 'local (on a Mac)', 'aws (direct mode, mac2.metal on your dedicated host)'],
  windows: [],
}

/** The end of a target refusal: who can, or that nobody can yet. */
export function whoCanRun(target: string): string {
  const names = TARGET_PROVIDERS[target as TargetOS] ?? []
  return names.length
    ? `providers that can run ${target}: ${names.join(', ')}`
    : `no provider of this crabbox version makes ${target} runners yet`
}

/** RSA 4096 for Windows runners on AWS and Azure (AWS imports no ed25519 key for Windows), else ed25519. */
export const leaseKeyType = (provider: string, target: string): 'ed25519' | 'rsa' =>
  target === 'windows' && (provider === 'aws' || provider === 'azure') ? 'rsa' : 'ed25519'
