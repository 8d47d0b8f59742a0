import type { Env } from '../../worker/env.js'
import type { FleetDeps } from '../../worker/fleet/deps.js'
import type { ProviderRegistry } from '../../worker/providers/registry.js'
import { createHetznerBrokerProvider } from '../../worker/providers/hetzner.js'
import { createAwsBrokerProvider } from '../../worker/providers/aws.js'
import type { FakeHetzner } from '../support/fake-hetzner.js'
import type { FakeEc2 } from '../support/fake-ec2.js'
import { inFleet } from './broker-support.js'

/**
 * The live Fleet object's Hetzner and AWS providers pointed at the fakes' JSON/XML
 * wire formats (the fakes are called as `fetch` inside workerd). Only the provider
 * registry is swapped; `restoreProviders()` puts the original back.
 */

export const fastCloud = { timeoutMs: 300, pollIntervalMs: 1, sleep: async () => {} }

let original: ProviderRegistry | undefined

export async function useCloudFakes(
  fakes: { hetzner: FakeHetzner; ec2: FakeEc2 },
  env: Record<string, string> = {},
  timing: Partial<typeof fastCloud> = {},
): Promise<void> {
  const { hetzner, ec2 } = fakes
  await inFleet((deps: FleetDeps) => {
    original ??= deps.providers
    const base = { storage: deps.storage }
    const hcloud = createHetznerBrokerProvider(
      {
        ...base,
        env: {
          HETZNER_TOKEN: hetzner.token,
          CRABBOX_HETZNER_API_URL: 'https://hetzner.fake/v1',
          CRABBOX_EUR_TO_USD: '1.1',
          ...env,
        } as unknown as Env,
        fetch: hetzner.fetch as typeof fetch,
      },
      { ...fastCloud, ...timing },
    )
    const aws = createAwsBrokerProvider(
      {
        ...base,
        env: {
          AWS_ACCESS_KEY_ID: ec2.accessKeyId,
          AWS_SECRET_ACCESS_KEY: ec2.secretAccessKey,
          CRABBOX_AWS_ENDPOINT: 'https://ec2.fake/',
          CRABBOX_CAPACITY_REGIONS: 'eu-west-2,us-east-1',
          ...env,
        } as unknown as Env,
        fetch: ec2.fetch as typeof fetch,
      },
      { ...fastCloud, ...timing },
    )
    const fallback = original
    deps.providers = {
      get: (name) => (name === 'hetzner' ? hcloud : name === 'aws' ? aws : fallback.get(name)),
      names: () => [...fallback.names(), 'hetzner', 'aws'],
    }
  })
}

/** Puts the original providers back and undoes the clock and minimum-lease settings tests change. */
export async function restoreProviders(): Promise<void> {
  await inFleet((deps: FleetDeps) => {
    if (original) deps.providers = original
    deps.now = () => new Date()
    delete deps.env.CRABBOX_MIN_LEASE_SECONDS
  })
}
