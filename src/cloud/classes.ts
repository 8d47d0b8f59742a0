/**
 * Machine classes → ordered provider types, and the static price tables used
 * when no live price is known. Pure: shared by the broker (workerd) and the CLI
 * (direct mode), so both always pick the same machines for the same request.
 */

import { BROKER_MACOS_CLOUDS, BROKER_WINDOWS_CLOUDS, DIRECT_WINDOWS_CLOUDS, whoCanRun } from './targets.js'

export type CloudProviderName = 'hetzner' | 'aws' | 'azure'

const machineClasses = ['standard', 'fast', 'large', 'beast'] as const
export type MachineClass = (typeof machineClasses)[number]

function azureSizes(names: string[]): string[] {
  return names.map((name) => `Standard_${name}`)
}

/** Per class, the first type is preferred; the rest are tried on capacity errors. */
const classTypes: Record<CloudProviderName, Record<MachineClass, readonly string[]>> = {
  hetzner: {
    standard: ['ccx33', 'cpx62', 'cx53'],
    fast: ['ccx43', 'cpx62', 'cx53'],
    large: ['ccx53', 'ccx43', 'cpx62', 'cx53'],
    beast: ['ccx63', 'ccx53', 'ccx43', 'cpx62', 'cx53'],
  },
  aws: {
    standard: ['c7a.8xlarge', 'c7i.8xlarge', 'm7a.8xlarge', 'm7i.8xlarge', 'c7a.4xlarge'],
    fast: ['c7a.16xlarge', 'c7i.16xlarge', 'm7a.16xlarge', 'm7i.16xlarge', 'c7a.12xlarge', 'c7a.8xlarge'],
    large: ['c7a.24xlarge', 'c7i.24xlarge', 'm7a.24xlarge', 'm7i.24xlarge', 'r7a.24xlarge', 'c7a.16xlarge', 'c7a.12xlarge'],
    beast: [
      'c7a.48xlarge',
      'c7i.48xlarge',
      'm7a.48xlarge',
      'm7i.48xlarge',
      'r7a.48xlarge',
      'c7a.32xlarge',
      'c7i.32xlarge',
      'm7a.32xlarge',
      'c7a.24xlarge',
      'c7a.16xlarge',
    ],
  },
  azure: {
    standard: azureSizes(['D32ads_v6', 'D32ds_v6', 'F32s_v2', 'D32ads_v5', 'D32ds_v5', 'D16ads_v6', 'D16ds_v6', 'F16s_v2']),
    fast: azureSizes([
      'D64ads_v6',
      'D64ds_v6',
      'F64s_v2',
      'D64ads_v5',
      'D64ds_v5',
      'D48ads_v6',
      'D48ds_v6',
      'F48s_v2',
      'D32ads_v6',
      'D32ds_v6',
      'F32s_v2',
    ]),
    large: azureSizes([
      'D96ads_v6',
      'D96ds_v6',
      'D96ads_v5',
      'D96ds_v5',
      'D64ads_v6',
      'D64ds_v6',
      'F64s_v2',
      'D48ads_v6',
      'D48ds_v6',
      'F48s_v2',
    ]),
    beast: azureSizes(['D192ds_v6', 'D128ds_v6', 'D96ads_v6', 'D96ds_v6', 'D96ads_v5', 'D96ds_v5', 'D64ads_v6', 'D64ds_v6', 'F64s_v2']),
  },
}

const isClass = (name: string): name is MachineClass => (machineClasses as readonly string[]).includes(name)

/**
 * Ordered candidate types for one lease. An explicit type is tried alone (the
 * user asked for exactly that machine); an unknown class is itself a literal type.
 */
export function candidateTypes(provider: CloudProviderName, machineClass: string, explicitType?: string): string[] {
  if (explicitType) return [explicitType]
  if (isClass(machineClass)) return [...classTypes[provider][machineClass]]
  return [machineClass]
}

/**
 * Linux everywhere; Windows where the provider makes Windows machines in that
 * mode (`DIRECT_WINDOWS_CLOUDS`, `BROKER_WINDOWS_CLOUDS`); macOS on AWS
 * (`BROKER_MACOS_CLOUDS`); anything else is
 * refused up front, naming who can.
 */
export function unsupportedTargetMessage(
  provider: CloudProviderName,
  target: string,
  mode: 'direct' | 'broker' = 'broker',
): string | undefined {
  if (target === 'linux') return undefined
  const name = { aws: 'AWS', hetzner: 'Hetzner', azure: 'Azure' }[provider]
  if (target === 'windows' && DIRECT_WINDOWS_CLOUDS.has(provider)) {
    if (mode === 'direct' || BROKER_WINDOWS_CLOUDS.has(provider)) return undefined
    return `${name} windows runners are not supported by the broker yet: crabbox makes them in direct mode only; ${whoCanRun(target)}. Use --target linux, or --provider ${provider} without a broker.`
  }
  // macOS on AWS: direct mode checks it in src/providers/cloud/macos.ts, the broker in worker/fleet/lease-ask.ts.
  if (target === 'macos' && BROKER_MACOS_CLOUDS.has(provider)) return undefined
  const instead = target === 'macos' ? ' (or the ssh provider for an existing Mac)' : ''
  return `${name} ${target} runners are not supported: crabbox makes no ${target} machines on ${name}; ${whoCanRun(target)}. Use --target linux${instead}.`
}

/** USD per hour when neither an override nor a live price is available. */
const staticHourlyUSD: Record<CloudProviderName, Record<string, number>> = {
  hetzner: { cx53: 0.08, cpx62: 0.18, ccx33: 0.36, ccx43: 0.54, ccx53: 0.72, ccx63: 1.08 },
  aws: {
    'c7a.4xlarge': 0.75,
    'c7a.8xlarge': 1.5,
    'c7a.12xlarge': 2.25,
    'c7a.16xlarge': 3.0,
    'c7a.24xlarge': 4.5,
    'c7a.32xlarge': 6.0,
    'c7a.48xlarge': 9.0,
  },
  // Azure has no price lookup; the unknown-type rate below applies to every size.
  azure: {},
}

/** Last resort when a type is in no table: deliberately high for AWS so caps err on the safe side. */
const unknownTypeHourlyUSD: Record<CloudProviderName, number> = { aws: 3.0, hetzner: 0.5, azure: 3.0 }

/** Static USD/hour for a type; for a class name, its dearest candidate (spend caps plan for the worst). */
export function fallbackHourlyUSD(provider: CloudProviderName, serverType: string): number {
  const one = (type: string) => staticHourlyUSD[provider][type] ?? unknownTypeHourlyUSD[provider]
  return isClass(serverType) ? Math.max(...classTypes[provider][serverType].map(one)) : one(serverType)
}

/** A broker request may carry the class name where the type goes; only a real type is explicit. */
export function explicitType(machineClass: string, serverType: string | undefined): string | undefined {
  return serverType && serverType !== machineClass && !isClass(serverType) ? serverType : undefined
}

const DEFAULT_EUR_TO_USD = 1.08

/** `CRABBOX_EUR_TO_USD` as a positive number, else the default rate. */
export function eurToUsdRate(text: string | undefined): number {
  const rate = Number(text)
  return text !== undefined && text.trim() !== '' && Number.isFinite(rate) && rate > 0 ? rate : DEFAULT_EUR_TO_USD
}

/**
 * `CRABBOX_COST_RATES_JSON`: a flat `{"provider:type": usd}` map that wins over
 * live and static prices. Invalid JSON or values are ignored, never fatal.
 */
export function rateOverride(json: string | undefined, provider: CloudProviderName, serverType: string): number | undefined {
  if (!json) return undefined
  try {
    const value = (JSON.parse(json) as Record<string, unknown>)[`${provider}:${serverType}`]
    return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : undefined
  } catch {
    return undefined
  }
}

export const round2 = (n: number): number => Math.round(n * 100) / 100
