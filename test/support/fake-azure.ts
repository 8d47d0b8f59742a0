/**
 * A fake Azure (Entra ID token endpoint + Azure Resource Manager): the calls
 * crabbox makes, in ARM's wire format — `api-version` required, bearer tokens
 * checked, `{"error":{"code","message"}}` bodies, an `x-ms-request-id` on every
 * reply, PUT answered 201 + `Azure-AsyncOperation` and DELETE 202 + `Location`
 * (both polled until done), collections paged with `nextLink`, and the
 * dependency errors ARM gives for a NIC or public IP still in use. Failures
 * are injected with the shared fault switches.
 *
 * A plain `(Request) => Promise<Response>` handler: served on loopback with
 * `serveFake` for the CLI, or called directly as `fetch`.
 */
import { faultSwitch, type FaultSpec } from './fake-faults.js'

export { DropConnection, serveFake, type ServedFake } from './fake-faults.js'

export interface AzureFailure extends FaultSpec {
  method?: string
  /** Matches the lowercased resource path (no query), e.g. /networkinterfaces\/.*-nic$/. */
  path: string | RegExp
  /** Only for requests whose JSON body satisfies this. */
  when?: (body: Record<string, unknown>) => boolean
}

export interface RecordedAzureCall {
  method: string
  path: string
  query: string
  body?: Record<string, unknown>
}

type Json = Record<string, unknown>

interface Resource {
  id: string
  name: string
  type: string
  location?: string
  tags?: Record<string, string>
  sku?: Json
  properties: Json
}

interface Operation {
  /** Polls left before the operation reports its end. */
  polls: number
  done: () => { error?: { code: string; message: string } }
  kind: 'async' | 'location'
}

export interface FakeAzureOptions {
  tenantId?: string
  clientId?: string
  clientSecret?: string
  subscriptionId?: string
  /** The public IPv4 a new public IP resource gets; default 203.0.113.<n>. */
  addressFor?: (name: string) => string
  /** Sizes that fail synchronously with SkuNotAvailable (409). */
  unavailableSizes?: string[]
  /** Sizes whose VM create is accepted, then the operation fails with AllocationFailed (the VM stays, Failed). */
  allocationFailSizes?: string[]
  /** Spot VMs of any size are refused with OverconstrainedAllocationRequest (409); regular ones are made. */
  noSpot?: boolean
  /** Sizes refused with QuotaExceeded (409). */
  quotaSizes?: string[]
  /** Sizes that refuse an ephemeral OS disk (400 InvalidParameter). */
  noEphemeralSizes?: string[]
  /** Seconds a token is valid for (default 3599, as Entra ID answers). */
  tokenLifetime?: number
  /** Polls an operation takes before it ends (default 1). */
  operationPolls?: number
  /** Items per collection page (default 50). */
  pageSize?: number
  /** Called after a VM is created, with its decoded custom data. */
  onCreate?: (vm: { name: string; customData: string; tags: Record<string, string> }) => void | Promise<void>
  /** Called once a VM extension's operation succeeds, with the command it ran (settings or protectedSettings). */
  onExtension?: (extension: { vm: string; name: string; command: string }) => void | Promise<void>
  /**
   * The script an extension runs fails with this message: the operation ends Failed with
   * VMExtensionProvisioningError (the extension stays, provisioningState Failed), as Azure reports it.
   */
  extensionFails?: string
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
  })

const armError = (status: number, code: string, message: string) => json(status, { error: { code, message } })

interface State {
  options: FakeAzureOptions
  subscriptionId: string
  resources: Map<string, Resource>
  operations: Map<string, Operation>
  next: () => number
  origin: () => string
}

const key = (path: string) => path.toLowerCase().replace(/\/+$/, '')
const typeOf = (path: string) => {
  const parts = path.split('/')
  if (parts.length === 5 && parts[3].toLowerCase() === 'resourcegroups') return 'Microsoft.Resources/resourceGroups'
  const i = parts.findIndex((p) => p.toLowerCase() === 'providers')
  if (i < 0) return 'unknown'
  const rest = parts.slice(i + 1)
  return [rest[0], ...rest.slice(1).filter((_, n) => n % 2 === 0)].join('/')
}
const groupOf = (path: string) => key(path).split('/').slice(0, 5).join('/')

function startOperation(st: State, kind: Operation['kind'], done: Operation['done']): string {
  const id = `op-${st.next()}`
  st.operations.set(id, { polls: st.options.operationPolls ?? 1, done, kind })
  return `${st.origin()}/subscriptions/${st.subscriptionId}/providers/Fake.Operations/${id}?api-version=2024-03-01`
}

const references = (st: State, id: string) =>
  [...st.resources.values()].filter((r) => JSON.stringify(r.properties).toLowerCase().includes(`"${id.toLowerCase()}"`))

function putVm(st: State, path: string, body: Json, existing: Resource | undefined): Response {
  const properties = (body.properties ?? {}) as Json
  const size = String((properties.hardwareProfile as Json | undefined)?.vmSize ?? '')
  const disk = ((properties.storageProfile as Json | undefined)?.osDisk ?? {}) as Json
  if (st.options.unavailableSizes?.includes(size))
    return armError(409, 'SkuNotAvailable', `The requested VM size ${size} is currently not available in location 'eastus'.`)
  if (st.options.noSpot && properties.priority === 'Spot')
    return armError(
      409,
      'OverconstrainedAllocationRequest',
      `Allocation failed. There is no Spot capacity for VM size ${size} in this region.`,
    )
  if (st.options.quotaSizes?.includes(size))
    return armError(
      409,
      'QuotaExceeded',
      `Operation could not be completed as it results in exceeding approved standardDSv6Family Cores quota.`,
    )
  if (disk.diffDiskSettings && st.options.noEphemeralSizes?.includes(size))
    return armError(
      400,
      'InvalidParameter',
      `The Virtual Machine size ${size} does not support Ephemeral OS disk with placement ResourceDisk.`,
    )
  const nicIds = ((properties.networkProfile as Json | undefined)?.networkInterfaces ?? []) as Json[]
  for (const nic of nicIds)
    if (!st.resources.has(key(String(nic.id))))
      return armError(400, 'InvalidResourceReference', `Resource ${String(nic.id)} referenced by resource ${path} was not found.`)
  const failing = st.options.allocationFailSizes?.includes(size)
  const name = path.split('/').pop()!
  const osProfile = (properties.osProfile ?? {}) as Json
  const windowsRefused = windowsProfileError(osProfile)
  if (windowsRefused) return windowsRefused
  const vm: Resource = {
    id: path,
    name,
    type: 'Microsoft.Compute/virtualMachines',
    location: String(body.location ?? existing?.location ?? ''),
    tags: (body.tags as Record<string, string> | undefined) ?? existing?.tags ?? {},
    properties: { ...properties, provisioningState: 'Creating', timeCreated: new Date().toISOString(), vmId: `vm-${st.next()}` },
  }
  // ARM never returns custom data: keep it out of the stored VM.
  const customData = typeof osProfile.customData === 'string' ? atobUtf8(osProfile.customData) : ''
  vm.properties.osProfile = { ...osProfile, customData: undefined, adminPassword: undefined }
  st.resources.set(key(path), vm)
  const url = startOperation(st, 'async', () => {
    if (failing) {
      vm.properties.provisioningState = 'Failed'
      return {
        error: {
          code: 'AllocationFailed',
          message: `Allocation failed. We do not have sufficient capacity for the requested VM size ${size} in this region.`,
        },
      }
    }
    vm.properties.provisioningState = 'Succeeded'
    const diskName = String(disk.name ?? `${name}-osdisk`)
    const diskPath = `${groupOf(path)}/providers/microsoft.compute/disks/${diskName}`
    st.resources.set(key(diskPath), {
      id: diskPath,
      name: diskName,
      type: 'Microsoft.Compute/disks',
      location: vm.location,
      properties: { managedBy: path, provisioningState: 'Succeeded' },
    })
    void st.options.onCreate?.({ name, customData, tags: vm.tags ?? {} })
    return {}
  })
  return json(existing ? 200 : 201, vm, { 'azure-asyncoperation': url })
}

/** Windows VMs: the checks ARM makes on osProfile (password complexity, a 15-character computer name). */
function windowsProfileError(osProfile: Json): Response | undefined {
  if (!osProfile.windowsConfiguration) return undefined
  const password = String(osProfile.adminPassword ?? '')
  const classes = [/[a-z]/, /[A-Z]/, /[0-9]/, /[^a-zA-Z0-9]/].filter((re) => re.test(password)).length
  if (password.length < 12 || password.length > 123 || classes < 3)
    return armError(
      400,
      'InvalidParameter',
      'The supplied password must be between 12-123 characters long and must satisfy at least 3 of password complexity requirements from the following: 1) Contains an uppercase character 2) Contains a lowercase character 3) Contains a numeric digit 4) Contains a special character 5) Control characters are not allowed',
    )
  if (String(osProfile.computerName ?? '').length > 15)
    return armError(
      400,
      'InvalidParameter',
      'Windows computer name cannot be more than 15 characters long, be entirely numeric, or contain the following characters: ` ~ ! @ # $ % ^ & * ( ) = + _ [ ] { } \\ | ; : . \' " , < > / ?.',
    )
  if (osProfile.linuxConfiguration || osProfile.customData)
    return armError(400, 'InvalidParameter', 'A Windows VM takes windowsConfiguration only.')
  return undefined
}

/** PUT …/virtualMachines/{vm}/extensions/{name}: 201 + Azure-AsyncOperation; the script's outcome ends the operation. */
function putExtension(st: State, path: string, body: Json): Response {
  const vmPath = path.split('/').slice(0, -2).join('/')
  const vm = st.resources.get(key(vmPath))
  if (!vm)
    return armError(
      404,
      'ParentResourceNotFound',
      `Can not perform requested operation on nested resource. Parent resource '${vmPath.split('/').pop()}' not found.`,
    )
  const properties = (body.properties ?? {}) as Json
  if (properties.publisher !== 'Microsoft.Compute' || properties.type !== 'CustomScriptExtension' || !properties.typeHandlerVersion)
    return armError(400, 'InvalidParameter', 'The value of parameter publisher/type/typeHandlerVersion is invalid.')
  const settings = { ...((properties.settings ?? {}) as Json), ...((properties.protectedSettings ?? {}) as Json) }
  const command = String(settings.commandToExecute ?? '')
  if (!command) return armError(400, 'InvalidParameter', "Required parameter 'commandToExecute' is missing.")
  const name = path.split('/').pop()!
  // ARM never returns protectedSettings.
  const extension: Resource = {
    id: path,
    name,
    type: 'Microsoft.Compute/virtualMachines/extensions',
    location: String(body.location ?? vm.location ?? ''),
    properties: { ...properties, protectedSettings: undefined, provisioningState: 'Creating' },
  }
  st.resources.set(key(path), extension)
  const url = startOperation(st, 'async', () => {
    if (st.options.extensionFails) {
      extension.properties.provisioningState = 'Failed'
      return {
        error: {
          code: 'VMExtensionProvisioningError',
          message: `VM has reported a failure when processing extension '${name}' (publisher 'Microsoft.Compute' and type 'CustomScriptExtension'). Error message: "Command execution finished, but failed because it returned a non-zero exit code of: '1'. The command had an error output of: '${st.options.extensionFails}'".`,
        },
      }
    }
    extension.properties.provisioningState = 'Succeeded'
    void st.options.onExtension?.({ vm: vm.name, name, command })
    return {}
  })
  return json(201, extension, { 'azure-asyncoperation': url })
}

function put(st: State, path: string, body: Json, method: string): Response {
  const type = typeOf(path)
  const existing = st.resources.get(key(path))
  if (type !== 'Microsoft.Resources/resourceGroups' && !st.resources.has(groupOf(path)))
    return armError(404, 'ResourceGroupNotFound', `Resource group '${path.split('/')[4]}' could not be found.`)
  if (method === 'PATCH') {
    if (!existing) return armError(404, 'ResourceNotFound', `The Resource '${path}' was not found.`)
    if (body.tags) existing.tags = body.tags as Record<string, string>
    return json(200, existing)
  }
  if (type === 'Microsoft.Compute/virtualMachines') return putVm(st, path, body, existing)
  if (type === 'Microsoft.Compute/virtualMachines/extensions') return putExtension(st, path, body)
  const resource: Resource = {
    id: path,
    name: path.split('/').pop()!,
    type,
    location: typeof body.location === 'string' ? body.location : existing?.location,
    tags: (body.tags as Record<string, string> | undefined) ?? existing?.tags,
    ...(body.sku ? { sku: body.sku as Json } : {}),
    properties: { ...((body.properties ?? {}) as Json), provisioningState: 'Succeeded' },
  }
  if (type === 'Microsoft.Network/publicIPAddresses')
    resource.properties.ipAddress = existing?.properties.ipAddress ?? st.options.addressFor?.(resource.name) ?? `203.0.113.${st.next()}`
  if (type === 'Microsoft.Network/virtualNetworks/subnets' && !st.resources.has(key(path.split('/').slice(0, -2).join('/'))))
    return armError(404, 'NotFound', `Resource ${path.split('/').slice(0, -2).join('/')} not found.`)
  st.resources.set(key(path), resource)
  // Resource groups answer synchronously; the rest report through an async operation, as ARM does.
  if (type === 'Microsoft.Resources/resourceGroups') return json(existing ? 200 : 201, resource)
  return json(existing ? 200 : 201, resource, { 'azure-asyncoperation': startOperation(st, 'async', () => ({})) })
}

function remove(st: State, path: string): Response {
  const resource = st.resources.get(key(path))
  if (!resource) return new Response(null, { status: 204 })
  const users = references(st, resource.id).filter((r) => r !== resource)
  if (resource.type === 'Microsoft.Network/networkInterfaces' && users.some((r) => r.type === 'Microsoft.Compute/virtualMachines'))
    return armError(400, 'NicInUse', `Network Interface ${resource.id} is used by existing resource ${users[0].id}.`)
  if (resource.type === 'Microsoft.Network/publicIPAddresses' && users.length)
    return armError(
      400,
      'PublicIPAddressInUse',
      `Public IP address ${resource.id} can not be deleted since it is still allocated to resource ${users[0].id}.`,
    )
  // A resource group takes everything in it; a VM its extensions.
  if (resource.type === 'Microsoft.Resources/resourceGroups' || resource.type === 'Microsoft.Compute/virtualMachines')
    for (const k of [...st.resources.keys()]) if (k.startsWith(`${key(path)}/`)) st.resources.delete(k)
  resource.properties.provisioningState = 'Deleting'
  const url = startOperation(st, 'location', () => {
    st.resources.delete(key(path))
    return {}
  })
  return new Response(null, { status: 202, headers: { location: url, 'retry-after': '0' } })
}

function pollOperation(st: State, id: string): Response {
  const operation = st.operations.get(id)
  if (!operation) return armError(404, 'NotFound', `operation ${id} not found`)
  if (operation.polls-- > 0)
    return operation.kind === 'async'
      ? json(200, { status: 'InProgress' }, { 'retry-after': '0' })
      : new Response(null, { status: 202, headers: { 'retry-after': '0' } })
  st.operations.delete(id)
  const result = operation.done()
  if (operation.kind === 'location') return new Response(null, { status: 204 })
  return json(200, result.error ? { status: 'Failed', error: result.error } : { status: 'Succeeded' })
}

function list(st: State, path: string, url: URL): Response {
  const prefix = key(path)
  const parts = prefix.split('/')
  const wantedType = parts.slice(-2).join('/')
  const group = prefix.split('/').slice(0, 5).join('/')
  if (!st.resources.has(group)) return armError(404, 'ResourceGroupNotFound', `Resource group '${parts[4]}' could not be found.`)
  const all = [...st.resources.entries()]
    .filter(([k, r]) => k.startsWith(`${group}/`) && r.type.toLowerCase() === wantedType && k.split('/').length === parts.length + 1)
    .map(([, r]) => r)
  const size = st.options.pageSize ?? 50
  const skip = Number(url.searchParams.get('$skiptoken') ?? 0)
  const page = all.slice(skip, skip + size)
  const next =
    skip + size < all.length
      ? `${st.origin()}${path}?api-version=${url.searchParams.get('api-version')}&$skiptoken=${skip + size}`
      : undefined
  return json(200, { value: page, ...(next ? { nextLink: next } : {}) })
}

export function createFakeAzure(options: FakeAzureOptions = {}) {
  const tenantId = options.tenantId ?? '00000000-0000-4000-8000-0000000000aa'
  const clientId = options.clientId ?? '00000000-0000-4000-8000-0000000000bb'
  const clientSecret = options.clientSecret ?? 'fake-azure-secret'
  const subscriptionId = options.subscriptionId ?? '00000000-0000-4000-8000-0000000000cc'
  const resources = new Map<string, Resource>()
  const operations = new Map<string, Operation>()
  const calls: RecordedAzureCall[] = []
  const tokens = new Set<string>()
  const faults = faultSwitch<AzureFailure>()
  let tokenRequests = 0
  let counter = 0
  let requestCounter = 0
  let origin = ''
  const st: State = {
    options,
    subscriptionId,
    resources,
    operations,
    next: () => ++counter,
    origin: () => origin,
  }

  async function token(request: Request, tenant: string): Promise<Response> {
    tokenRequests++
    const form = new URLSearchParams(new TextDecoder().decode(await request.arrayBuffer()))
    if (tenant !== tenantId) return json(400, { error: 'invalid_request', error_description: `AADSTS90002: Tenant '${tenant}' not found.` })
    if (form.get('grant_type') !== 'client_credentials' || form.get('client_id') !== clientId || form.get('client_secret') !== clientSecret)
      return json(401, { error: 'invalid_client', error_description: 'AADSTS7000215: Invalid client secret provided.' })
    if (form.get('scope') !== 'https://management.azure.com/.default')
      return json(400, { error: 'invalid_scope', error_description: 'AADSTS70011: The provided value for scope is not valid.' })
    const value = `fake-arm-token-${tokenRequests}`
    tokens.add(value)
    return json(200, {
      token_type: 'Bearer',
      expires_in: options.tokenLifetime ?? 3599,
      ext_expires_in: options.tokenLifetime ?? 3599,
      access_token: value,
    })
  }

  async function route(request: Request, url: URL): Promise<Response> {
    const path = decodeURIComponent(url.pathname)
    const tokenMatch = /^\/([^/]+)\/oauth2\/v2\.0\/token$/.exec(path)
    if (tokenMatch && request.method === 'POST') return token(request, tokenMatch[1])
    const auth = request.headers.get('authorization') ?? ''
    if (!tokens.has(auth.replace(/^Bearer /, ''))) return armError(401, 'InvalidAuthenticationToken', 'The access token is invalid.')
    if (!url.searchParams.get('api-version'))
      return armError(400, 'MissingApiVersionParameter', 'The api-version query parameter (?api-version=) is required for all requests.')
    if (!key(path).startsWith(`/subscriptions/${subscriptionId}`.toLowerCase()))
      return armError(404, 'SubscriptionNotFound', `The subscription '${path.split('/')[2]}' could not be found.`)
    const operation = /\/providers\/Fake\.Operations\/([^/]+)$/.exec(path)
    if (operation) return pollOperation(st, operation[1])
    const text = request.method === 'GET' || request.method === 'DELETE' ? '' : await request.text()
    const body = text ? (JSON.parse(text) as Json) : {}
    calls.push({ method: request.method, path, query: url.search, ...(text ? { body } : {}) })
    const played = await faults.play(
      (f) =>
        (!f.method || f.method === request.method) &&
        (typeof f.path === 'string' ? key(path) === f.path.toLowerCase() : f.path.test(key(path))) &&
        (!f.when || f.when(body)),
      async () => {
        if (request.method === 'PUT' || request.method === 'PATCH') return put(st, path, body, request.method)
        if (request.method === 'DELETE') return remove(st, path)
        const resource = resources.get(key(path))
        if (resource) return json(200, resource)
        const segments = key(path).split('/').length
        if (request.method === 'GET' && segments >= 8 && segments % 2 === 0) return list(st, path, url)
        return armError(
          404,
          'ResourceNotFound',
          `The Resource '${path.split('/').slice(-2).join('/')}' under resource group '${path.split('/')[4]}' was not found.`,
        )
      },
      (f) => armError(f.status ?? 409, f.code ?? 'Conflict', f.message ?? 'injected failure'),
    )
    return played
  }

  async function handler(request: Request): Promise<Response> {
    const url = new URL(request.url)
    origin ||= url.origin
    const response = await route(request, url)
    const headers = new Headers(response.headers)
    headers.set('x-ms-request-id', `00000000-0000-4000-9000-${String(++requestCounter).padStart(12, '0')}`)
    return new Response(response.body, { status: response.status, headers })
  }

  const groupPath = (group: string) => `/subscriptions/${subscriptionId}/resourceGroups/${group}`

  return {
    handler,
    calls,
    tenantId,
    clientId,
    clientSecret,
    subscriptionId,
    inject: (failure: AzureFailure) => faults.inject(failure),
    releaseHung: () => faults.releaseHung(),
    get tokenRequests() {
      return tokenRequests
    },
    /** Resources of one type (e.g. `Microsoft.Compute/virtualMachines`) still present. */
    ofType: (type: string) => [...resources.values()].filter((r) => r.type === type),
    resource: (path: string) => resources.get(key(path)),
    /** Puts a resource in place directly (something crabbox did not create, or an old lease). */
    seed(path: string, resource: Omit<Resource, 'id' | 'name' | 'type'>) {
      const full = path.startsWith('/') ? path : `${groupPath(path.split('/')[0])}/${path.split('/').slice(1).join('/')}`
      resources.set(key(full), { id: full, name: full.split('/').pop()!, type: typeOf(full), ...resource })
      return full
    },
    groupPath,
  }
}

function atobUtf8(data: string): string {
  const binary = atob(data)
  return new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)))
}
