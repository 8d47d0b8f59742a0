import { CrabboxError } from '../errors.js'
import { localProvider } from './local/index.js'
import { sshProvider } from './ssh.js'
import type { DirectProvider } from './types.js'

const aliases: Record<string, string> = { static: 'ssh', 'static-ssh': 'ssh', blacksmith: 'blacksmith-testbox' }

/** Cloud providers live in their own modules, loaded only when picked (they pull in API clients). */
// Literal import() calls, so the build's bundler sees them and keeps them as lazy chunks.
const lazy: Record<string, () => Promise<Record<string, unknown>>> = {
  hetzner: () => import('./hetzner.js'),
  aws: () => import('./aws.js'),
  azure: () => import('./azure.js'),
  'blacksmith-testbox': () => import('./blacksmith/index.js'),
  islo: () => import('./islo/index.js'),
  e2b: () => import('./e2b/index.js'),
  daytona: () => import('./daytona/index.js'),
}

/** Providers that own their machines and the run (direct mode only, even with a broker configured). */
const delegatedNames = new Set(['blacksmith-testbox', 'islo', 'e2b', 'daytona'])

/** The provider's own name for `name` (an alias such as `blacksmith` → `blacksmith-testbox`). */
export const canonicalProvider = (name: string) => aliases[name] ?? name

/** Whether `name` (or its alias) is a delegated provider. */
export const isDelegatedProvider = (name: string) => delegatedNames.has(aliases[name] ?? name)

const directProviderNames = ['local', 'ssh', ...Object.keys(lazy)]

/** The direct-mode provider called `name` (aliases `static`, `static-ssh` → `ssh`). */
export async function directProvider(name: string): Promise<DirectProvider> {
  const canonical = aliases[name] ?? name
  if (canonical === 'local') return localProvider
  if (canonical === 'ssh') return sshProvider
  const load = lazy[canonical]
  if (load) {
    let module: Record<string, unknown> | undefined
    try {
      module = await load()
    } catch {
      module = undefined
    }
    // Any export that is a DirectProvider with this name will do; the module owns its naming.
    const found = Object.values(module ?? {}).find(
      (value): value is DirectProvider =>
        typeof value === 'object' &&
        value !== null &&
        (value as DirectProvider).name === canonical &&
        typeof (value as DirectProvider).acquire === 'function',
    )
    if (found) return found
    throw new CrabboxError(`provider ${canonical} is not available in direct mode in this build`, {
      exit: 'usage',
      hint: 'configure a broker (`crabbox login`) or use --provider local or --provider ssh',
    })
  }
  throw new CrabboxError(`unknown provider ${JSON.stringify(name)}`, {
    exit: 'usage',
    hint: `use one of: ${directProviderNames.join(', ')}`,
  })
}
