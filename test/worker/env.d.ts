import type { Env as BrokerEnv } from '../../worker/env.js'

// `env` from cloudflare:test carries the broker's bindings.
declare global {
  namespace Cloudflare {
    interface Env extends BrokerEnv {}
  }
}
