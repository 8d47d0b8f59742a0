import { Errors, Flags } from '@oclif/core'
import {
  DURATION_FORM,
  MARKETS,
  NETWORK_MODES,
  parseDuration,
  parseLeaseDuration,
  PROFILE_FORM,
  PROFILE_PATTERN,
  TARGET_ALIASES,
  TARGET_FORM,
  WINDOWS_MODE_ALIASES,
  WINDOWS_MODE_FORM,
} from './config/schema.js'
import { usageError } from './errors.js'

/**
 * Flags shared by several commands. Lease flags are named after config keys
 * (see config/load.ts flagPaths), so `context(flags)` applies them; none has a
 * default, so an unset flag never hides a config file value.
 */

/**
 * A duration flag (`90m`, `30s`, `2h`, a bare number is seconds), checked with
 * the config's own parser while flags are parsed: bad input is a usage error
 * (exit 2) naming the flag. The value stays text, as durations are in config;
 * `parseDuration` turns it into milliseconds where it is used.
 */
export const durationFlag = Flags.custom<string>({
  helpValue: 'DURATION',
  async parse(input) {
    try {
      parseDuration(input)
    } catch {
      throw new Errors.CLIError(`expected ${DURATION_FORM} (a number with ms, s, m, h or d), got ${JSON.stringify(input)}`, { exit: 2 })
    }
    return input.trim()
  },
})

/**
 * A lease lifetime or idle timeout: a unit is required, 0 is refused and 24h is
 * the most (`parseLeaseDuration`); anything else is a usage error (exit 2).
 */
export const leaseDurationFlag = Flags.custom<string>({
  helpValue: 'DURATION',
  async parse(input) {
    try {
      parseLeaseDuration(input)
    } catch (error) {
      throw new Errors.CLIError((error as Error).message, { exit: 2 })
    }
    return input.trim()
  },
})

/**
 * A flag that takes one of a few names (or an alias of one), checked while flags
 * are parsed: anything else is a usage error (exit 2) naming what is expected.
 * The value is the canonical name.
 */
export function parseChoice(input: string, aliases: Readonly<Record<string, string>>, form: string): string {
  const key = input.trim().toLowerCase()
  if (!Object.hasOwn(aliases, key)) throw new Errors.CLIError(`expected ${form}, got ${JSON.stringify(input)}`, { exit: 2 })
  return aliases[key]
}

const same = (names: readonly string[]) => Object.fromEntries(names.map((name) => [name, name]))
const choiceFlag = (aliases: Readonly<Record<string, string>>, form: string, helpValue: string) =>
  Flags.custom<string>({ helpValue, parse: async (input) => parseChoice(input, aliases, form) })

/** A profile is a free-form name; it goes to the broker and onto the machine's labels, so it is one short word. */
export function parseProfile(input: string): string {
  const value = input.trim()
  if (!PROFILE_PATTERN.test(value)) throw new Errors.CLIError(`expected ${PROFILE_FORM}, got ${JSON.stringify(input)}`, { exit: 2 })
  return value
}

/** Flags that choose what a new lease looks like. */
export const leaseFlags = {
  provider: Flags.string({
    description: 'Provider: local (default without a broker), ssh, static, hetzner, aws, azure',
    helpGroup: 'LEASE',
  }),
  class: Flags.string({ description: 'Machine class (standard, fast, large, beast)', helpGroup: 'LEASE' }),
  type: Flags.string({ description: 'Exact provider server type', helpGroup: 'LEASE' }),
  profile: Flags.custom<string>({ helpValue: 'NAME', parse: async (input) => parseProfile(input) })({
    description: 'Profile name sent to the broker and put on the machine as a label (config profile; default "default")',
    helpGroup: 'LEASE',
  }),
  target: choiceFlag(
    TARGET_ALIASES,
    TARGET_FORM,
    'linux|macos|windows',
  )({
    description: 'Target OS: linux, macos, windows (aliases ubuntu, mac, darwin, osx, win)',
    helpGroup: 'LEASE',
  }),
  'windows-mode': choiceFlag(
    WINDOWS_MODE_ALIASES,
    WINDOWS_MODE_FORM,
    'normal|wsl2',
  )({
    description: 'Windows target only: normal or wsl2 (config windows.mode)',
    helpGroup: 'LEASE',
  }),
  market: choiceFlag(
    same(MARKETS),
    'spot or on-demand',
    'spot|on-demand',
  )({
    description: 'Capacity market: spot or on-demand (config capacity.market)',
    helpGroup: 'LEASE',
  }),
  network: choiceFlag(
    same(NETWORK_MODES),
    'auto, tailscale or public',
    'auto|tailscale|public',
  )({
    description: 'How the runner is reached: auto, tailscale or public (config network)',
    helpGroup: 'LEASE',
  }),
  tailscale: Flags.boolean({
    description: 'Join the runner to your tailnet with a one-off key (config tailscale.enabled)',
    allowNo: true,
    helpGroup: 'LEASE',
  }),
  'tailscale-tags': Flags.string({
    description: 'Tailscale tags for the runner, comma-separated (config tailscale.tags; default tag:crabbox)',
    helpValue: 'TAGS',
    helpGroup: 'LEASE',
  }),
  'tailscale-hostname-template': Flags.string({
    description: 'Tailnet hostname; {id}, {slug} and {provider} are filled in (config tailscale.hostnameTemplate)',
    helpValue: 'TEMPLATE',
    helpGroup: 'LEASE',
  }),
  'tailscale-auth-key-env': Flags.string({
    description: 'Direct mode: the variable holding your Tailscale auth key (config tailscale.authKeyEnv)',
    helpValue: 'NAME',
    helpGroup: 'LEASE',
  }),
  'tailscale-exit-node': Flags.string({
    description: "Send the runner's internet traffic through this tailnet exit node (config tailscale.exitNode)",
    helpValue: 'NODE',
    helpGroup: 'LEASE',
  }),
  'tailscale-exit-node-allow-lan-access': Flags.boolean({
    description: 'With an exit node, keep the runner on its local network too (config tailscale.exitNodeAllowLanAccess)',
    allowNo: true,
    helpGroup: 'LEASE',
  }),
  desktop: Flags.boolean({ description: 'Ask for a desktop on the runner (config desktop)', allowNo: true, helpGroup: 'LEASE' }),
  browser: Flags.boolean({ description: 'Ask for a browser on the runner (config browser)', allowNo: true, helpGroup: 'LEASE' }),
  code: Flags.boolean({ description: 'Ask for code-server on the runner (config code)', allowNo: true, helpGroup: 'LEASE' }),
  ttl: leaseDurationFlag({ description: 'Hard lease lifetime, e.g. 90m (a unit is required; at most 24h)', helpGroup: 'LEASE' }),
  'idle-timeout': leaseDurationFlag({
    description: 'Release after this long without a heartbeat, e.g. 30m (a unit is required; at most 24h)',
    helpGroup: 'LEASE',
  }),
  'work-root': Flags.string({ description: 'Folder on the runner that holds the synced checkouts (config workRoot)', helpGroup: 'LEASE' }),
  'static-host': Flags.string({ description: 'ssh provider: host to use', helpGroup: 'LEASE' }),
  'static-user': Flags.string({ description: 'ssh provider: user on that host', helpGroup: 'LEASE' }),
  'static-port': Flags.string({ description: 'ssh provider: SSH port of that host', helpGroup: 'LEASE' }),
  'static-work-root': Flags.string({
    description: 'Static hosts: the work root on that host (config static.workRoot; wins over --work-root there)',
    helpGroup: 'LEASE',
  }),
}

/** `--reclaim`: take over a lease another checkout on this machine has claimed (services/claims.ts). */
export const reclaimFlag = Flags.boolean({
  description: 'Use the lease even though another checkout on this machine claimed it, and move its claim here',
  default: false,
})

/** `--id <lease ID or slug>`, resolved the same way by every command. */
export const idFlag = Flags.string({ description: 'Lease ID (cbx_…) or slug', helpValue: 'ID|SLUG' })

/** `YYYY-MM` with a real month, or a usage error saying so. */
export function parseMonth(input: string): string {
  const value = input.trim()
  if (!/^\d{4}-(0[1-9]|1[0-2])$/.test(value))
    throw new Errors.CLIError(`expected a month as YYYY-MM (e.g. 2026-05), got ${JSON.stringify(input)}`, { exit: 2 })
  return value
}

/** A whole number of at least 1, or a usage error saying so. */
export function parsePositiveInt(input: string): number {
  const value = input.trim()
  if (!/^\d{1,9}$/.test(value) || Number(value) < 1)
    throw new Errors.CLIError(`expected a whole number of at least 1, got ${JSON.stringify(input)}`, { exit: 2 })
  return Number(value)
}

/** `--month YYYY-MM` (checked while flags are parsed: bad input is exit 2 naming the flag). */
export const monthFlag = Flags.custom<string>({ helpValue: 'YYYY-MM', parse: async (input) => parseMonth(input) })

/** `--limit N`, N ≥ 1 (checked while flags are parsed). */
export const limitFlag = Flags.custom<number>({ helpValue: 'N', parse: async (input) => parsePositiveInt(input) })

/** `--id <run ID>` on the run history commands, beside the positional run ID. */
export const runIdFlag = Flags.string({ description: 'Run ID (run_…), instead of the positional argument', helpValue: 'RUN' })

/**
 * The ID given either positionally or with `--id`. Both may be given when they
 * agree; two different IDs are a usage error (exit 2) naming both.
 */
export function oneId(positional: string | undefined, flag: string | undefined, what: 'lease' | 'run'): string | undefined {
  if (positional && flag && positional !== flag)
    throw usageError(`two ${what}s named: ${positional} and --id ${flag}`, `Give the ${what} once, positionally or with --id.`)
  return positional || flag
}

/** The run ID of `logs`, `events`, `attach` and `results`: positional or `--id`, one of them required. */
export function runIdOf(positional: string | undefined, flag: string | undefined): string {
  const id = oneId(positional, flag, 'run')
  if (!id) throw usageError('which run?', 'Pass a run ID (`crabbox history` lists them), positionally or with --id.')
  return id
}

/** Which lease a desktop command (desktop *, screenshot, vnc) works on: `--id`, or a static host. */
export const desktopTargetFlags = {
  id: idFlag,
  provider: leaseFlags.provider,
  'static-host': leaseFlags['static-host'],
  'static-user': leaseFlags['static-user'],
  'static-port': leaseFlags['static-port'],
  reclaim: reclaimFlag,
  network: leaseFlags.network,
}
