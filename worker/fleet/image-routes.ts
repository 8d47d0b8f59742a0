import { AmiId, ImageCreateRequest, ImageResponse } from '../../src/protocol/images.js'
import { ApiError, ErrorCode } from '../../src/protocol/errors.js'
import { canSeeOwned, withOwnerNamespace, type Identity } from '../auth/identity.js'
import { canImage } from '../providers/registry.js'
import type { BrokerProvider, ImageProvider } from '../providers/types.js'
import type { FleetDeps } from './deps.js'
import { getImage, imageRecord, promoteImage, saveImage, type ImageRow } from './images.js'
import { requireManage, resolveLease } from './lease-store.js'
import { defineRoute, type RouteSpec } from './route-spec.js'

/**
 * AWS images baked from leases. Creating one needs manage rights on the lease
 * (its owner, a `manage` sharee, or an admin); reading one, its creator or an
 * admin; promoting one (new brokered AWS leases start from it) is admin only.
 */

function imageProvider(deps: FleetDeps): BrokerProvider & ImageProvider {
  const provider = deps.providers.get('aws')
  if (!canImage(provider)) throw new ApiError(400, ErrorCode.unsupportedProvider, 'this broker cannot make images')
  return provider
}

const notFound = (id: string) => new ApiError(404, ErrorCode.notFound, `image ${id} not found`)

/** The broker's record of an image the caller may see, plus the cloud's view of it; 404 when either is missing. */
async function lookup(deps: FleetDeps, identity: Identity, id: string) {
  const row = getImage(deps.storage, id)
  // Admins may name any AMI (one baked elsewhere); everyone else only their own images.
  if (!identity.admin && (!row || !canSeeOwned(withOwnerNamespace({ owner: row.owner, org: row.org }, row.claimed), identity)))
    throw notFound(id)
  const provider = imageProvider(deps)
  const region = row?.region ?? provider.imageRegion
  const cloud = await provider.describeImage(id, region)
  if (!cloud) throw notFound(id)
  const known: ImageRow = row ?? {
    id,
    provider: 'aws',
    region,
    name: cloud.name,
    owner: identity.owner,
    org: identity.org,
    claimed: identity.claimed,
    createdAt: '',
  }
  return { row: known, cloud }
}

export const IMAGE_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'POST',
      path: '/v1/images',
      summary: "Bake an AWS image (AMI) of a lease's machine (lease owner, manage sharee or admin)",
      auth: 'user',
      body: ImageCreateRequest,
      response: ImageResponse,
    },
    async (c, deps, input) => {
      const identity = c.get('identity')
      const body = await input.body()
      const ref = body.leaseID ?? body.id
      if (!ref) throw new ApiError(400, ErrorCode.invalidRequest, 'invalid request body: leaseID is required')
      const lease = resolveLease(deps.storage, identity, ref, deps.now())
      requireManage(lease, identity)
      if (lease.provider !== 'aws' || !lease.cloudID)
        throw new ApiError(400, ErrorCode.unsupportedProvider, `only AWS leases can be imaged; ${lease.id} is a ${lease.provider} lease`)
      if (lease.state !== 'active')
        throw new ApiError(409, ErrorCode.leaseNotActive, `lease ${lease.id} is ${lease.state}: its machine is gone`)
      const cloud = await imageProvider(deps).createImage(
        { id: lease.cloudID, region: lease.region, leaseId: lease.id },
        {
          name: body.name,
          noReboot: body.noReboot ?? true,
          tags: { crabbox: 'true', created_by: 'crabbox', lease: lease.id, owner: identity.owner.slice(0, 256) },
        },
      )
      const row: ImageRow = {
        id: cloud.id,
        provider: 'aws',
        region: cloud.region,
        name: body.name,
        leaseId: lease.id,
        owner: identity.owner,
        org: identity.org,
        claimed: identity.claimed,
        createdAt: deps.now().toISOString(),
      }
      saveImage(deps.storage, row)
      return c.json({ image: imageRecord(row, cloud) }, 201)
    },
  ),
  defineRoute(
    {
      method: 'GET',
      path: '/v1/images/:ami',
      summary: 'An image and its state (its creator or admin)',
      auth: 'user',
      params: { ami: AmiId },
      response: ImageResponse,
    },
    async (c, deps, input) => {
      const { row, cloud } = await lookup(deps, c.get('identity'), input.param('ami'))
      return c.json({ image: imageRecord(row, cloud) })
    },
  ),
  defineRoute(
    {
      method: 'POST',
      path: '/v1/images/:ami/promote',
      summary: 'Make an available image the one new brokered AWS leases start from',
      auth: 'admin',
      params: { ami: AmiId },
      response: ImageResponse,
    },
    async (c, deps, input) => {
      const { row, cloud } = await lookup(deps, c.get('identity'), input.param('ami'))
      if (cloud.state !== 'available')
        throw new ApiError(409, ErrorCode.imageNotAvailable, `image ${row.id} is ${cloud.state}; promote it once it is available`)
      const promoted = promoteImage(deps.storage, { ...row, name: cloud.name || row.name }, deps.now().toISOString())
      return c.json({ image: imageRecord(promoted, cloud) })
    },
  ),
]
