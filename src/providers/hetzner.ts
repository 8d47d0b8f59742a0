import type { Config } from '../config/schema.js'
import {
  createHetznerApi,
  createHetznerMachine,
  deleteHetznerMachine,
  findHetznerMachine,
  listHetznerMachines,
  touchHetznerMachine,
} from '../cloud/hetzner-api.js'
import { hetznerToken } from './cloud/credentials.js'
import { directCloudProvider, type CloudBackend } from './cloud/direct.js'

/**
 * Hetzner Cloud in direct mode: the CLI creates the server with the token in
 * `HCLOUD_TOKEN` (or `HETZNER_TOKEN`), in `hetzner.location` with `hetzner.image`.
 * Hetzner has no console-output API, so host keys are trusted on first use.
 */
export function hetznerBackend(config: Config): CloudBackend {
  const api = createHetznerApi({ token: hetznerToken(), apiUrl: config.hetzner.apiUrl })
  return {
    where: config.hetzner.location,
    create: (request) =>
      createHetznerMachine(api, { ...request, serverTypes: request.types, location: config.hetzner.location, image: config.hetzner.image }),
    find: (leaseId) => findHetznerMachine(api, leaseId),
    list: () => listHetznerMachines(api),
    delete: (target) => deleteHetznerMachine(api, target),
    touch: (target) => touchHetznerMachine(api, target.id),
    state: async (target) => (await api.getServer(target.id)).status,
  }
}

export const hetznerProvider = directCloudProvider('hetzner', hetznerBackend)
