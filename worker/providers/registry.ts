import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import { createAwsBrokerProvider } from './aws.js'
import { createAzureBrokerProvider } from './azure.js'
import { createHetznerBrokerProvider } from './hetzner.js'
import { createStaticProvider } from './static.js'
import type { BrokerProvider, BrokerProviderContext, BrokerProviderFactory, ImageProvider, ListableProvider } from './types.js'

/**
 * Provider name → factory. A lease request's `provider` picks one; providers
 * are built lazily, once per Fleet object.
 */
const factories: Record<string, BrokerProviderFactory> = {
  static: createStaticProvider,
  hetzner: (context) => createHetznerBrokerProvider(context),
  aws: (context) => createAwsBrokerProvider(context),
  azure: (context) => createAzureBrokerProvider(context),
}

export interface ProviderRegistry {
  /** The provider for a name; 400 `unsupported_provider` when unknown or not built in. */
  get(name: string): BrokerProvider
  names(): string[]
}

export function providerRegistry(context: BrokerProviderContext): ProviderRegistry {
  const built = new Map<string, BrokerProvider>()
  return {
    get(name) {
      const factory = Object.hasOwn(factories, name) ? factories[name] : undefined
      if (!factory)
        throw new ApiError(
          400,
          ErrorCode.unsupportedProvider,
          `provider ${JSON.stringify(name)} is not supported by this broker; use one of: ${Object.keys(factories).join(', ')}`,
        )
      let provider = built.get(name)
      if (!provider) {
        provider = factory(context)
        built.set(name, provider)
      }
      return provider
    },
    names: () => Object.keys(factories),
  }
}

export const isListable = (provider: BrokerProvider): provider is BrokerProvider & ListableProvider =>
  typeof (provider as Partial<ListableProvider>).list === 'function'

export const canImage = (provider: BrokerProvider): provider is BrokerProvider & ImageProvider =>
  typeof (provider as Partial<ImageProvider>).createImage === 'function'
