import { Flags } from '@oclif/core'

/**
 * Flags that choose what a new lease looks like. Their names are config keys
 * (see config/load.ts flagPaths), so `context(flags)` applies them; none has a
 * default, so an unset flag never hides a config file value.
 */
export const leaseFlags = {
  provider: Flags.string({ description: 'Provider: local (default without a broker), ssh, static, hetzner, aws', helpGroup: 'LEASE' }),
  class: Flags.string({ description: 'Machine class (standard, fast, large, beast)', helpGroup: 'LEASE' }),
  type: Flags.string({ description: 'Exact provider server type', helpGroup: 'LEASE' }),
  target: Flags.string({ description: 'Target OS: linux, macos, windows', helpGroup: 'LEASE' }),
  ttl: Flags.string({ description: 'Hard lease lifetime, e.g. 90m', helpGroup: 'LEASE' }),
  'idle-timeout': Flags.string({ description: 'Release after this long without a heartbeat, e.g. 30m', helpGroup: 'LEASE' }),
  'static-host': Flags.string({ description: 'ssh provider: host to use', helpGroup: 'LEASE' }),
  'static-user': Flags.string({ description: 'ssh provider: user on that host', helpGroup: 'LEASE' }),
  'static-port': Flags.string({ description: 'ssh provider: SSH port of that host', helpGroup: 'LEASE' }),
}

/** `--id <lease ID or slug>`, resolved the same way by every command. */
export const idFlag = Flags.string({ description: 'Lease ID (cbx_…) or slug', helpValue: 'ID|SLUG' })
