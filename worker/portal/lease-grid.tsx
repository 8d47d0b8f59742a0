import * as v from 'valibot'
import type { LeaseRecord } from '../../src/protocol/leases.js'
import { LEASE_GRID_SORTS, leaseGrid, type LeaseGridQuery } from '../fleet/lease-store.js'
import type { FleetDeps } from '../fleet/deps.js'
import { CopyCommand, TableWrap } from './layout.js'
import { relativeTime, stateTone } from './format.js'
import type { PortalCaller } from './page.js'
import { RunnerSection } from './runner-pages.js'

/** `/portal`: the lease grid. Query parameters are all optional and lenient (unknown values fall back). */

export const GRID_PAGE_SIZE = 25

const Word = (max: number) => v.optional(v.pipe(v.string(), v.maxLength(max)))

export const LeaseGridParams = v.object({
  q: Word(128),
  state: Word(16),
  scope: Word(16),
  provider: Word(32),
  target: Word(32),
  sort: Word(16),
  dir: Word(8),
  page: Word(8),
})
export type LeaseGridParams = v.InferOutput<typeof LeaseGridParams>

const STATES = ['active', 'ended', 'all'] as const
const PROVIDERS = ['static', 'hetzner', 'aws'] as const
const TARGETS = ['linux', 'macos', 'windows'] as const

export interface GridView {
  params: Required<Pick<LeaseGridParams, 'state' | 'scope' | 'sort' | 'dir'>> & LeaseGridParams
  page: number
  query: LeaseGridQuery
}

/** The lenient reading of the grid's parameters: default `active`, newest first, page 1. */
export function gridView(raw: LeaseGridParams, caller: PortalCaller): GridView {
  const state = (STATES as readonly string[]).includes(raw.state ?? '') ? raw.state! : 'active'
  const scopes = caller.identity.admin ? ['all', 'mine', 'system'] : ['all', 'mine']
  const scope = scopes.includes(raw.scope ?? '') ? raw.scope! : 'all'
  const sort = raw.sort && raw.sort in LEASE_GRID_SORTS ? (raw.sort as keyof typeof LEASE_GRID_SORTS) : 'created'
  const dir = raw.dir === 'asc' ? 'asc' : 'desc'
  const page = Math.max(1, Math.min(10_000, Number.parseInt(raw.page ?? '1', 10) || 1))
  const provider = (PROVIDERS as readonly string[]).includes(raw.provider ?? '') ? raw.provider : undefined
  const target = (TARGETS as readonly string[]).includes(raw.target ?? '') ? raw.target : undefined
  const search = raw.q?.trim() || undefined
  return {
    params: { ...raw, state, scope, sort, dir, ...(provider ? { provider } : {}), ...(target ? { target } : {}) },
    page,
    query: {
      ...(state === 'active' ? { state: 'live' as const } : state === 'ended' ? { state: 'ended' as const } : {}),
      ...(scope === 'mine' ? { mine: true } : {}),
      ...(scope === 'system' ? { system: true } : {}),
      ...(provider ? { provider } : {}),
      ...(target ? { target } : {}),
      ...(search ? { search } : {}),
      sort,
      dir,
      offset: (page - 1) * GRID_PAGE_SIZE,
      limit: GRID_PAGE_SIZE,
    },
  }
}

/** A grid URL with some parameters changed (sorting, paging). */
function gridHref(params: LeaseGridParams, change: Partial<Record<keyof LeaseGridParams, string | undefined>>): string {
  const search = new URLSearchParams()
  for (const [key, value] of Object.entries({ ...params, ...change })) if (value) search.set(key, value)
  const text = search.toString()
  return text ? `/portal?${text}` : '/portal'
}

export const leaseCommands = (lease: Pick<LeaseRecord, 'id'>) => ({
  ssh: `crabbox ssh --id ${lease.id}`,
  run: `crabbox run --id ${lease.id} -- <command>`,
  stop: `crabbox stop ${lease.id}`,
})

function SortHeader({
  view,
  column,
  label,
  wide,
}: {
  view: GridView
  column: keyof typeof LEASE_GRID_SORTS
  label: string
  wide?: boolean
}) {
  const current = view.params.sort === column
  const nextDir = current && view.params.dir === 'desc' ? 'asc' : 'desc'
  const sort = current ? (view.params.dir === 'asc' ? 'ascending' : 'descending') : undefined
  return (
    <th scope="col" {...(wide ? { class: 'wide' } : {})} {...(sort ? { 'aria-sort': sort } : {})}>
      <a href={gridHref(view.params, { sort: column, dir: nextDir, page: undefined })}>
        {label}
        {current ? (view.params.dir === 'asc' ? ' ▲' : ' ▼') : ''}
      </a>
    </th>
  )
}

function Filters({ view, caller }: { view: GridView; caller: PortalCaller }) {
  const p = view.params
  const scopes: [string, string][] = caller.identity.admin
    ? [
        ['all', 'Everyone'],
        ['mine', 'Mine'],
        ['system', 'System'],
      ]
    : [
        ['all', 'Visible to me'],
        ['mine', 'Mine'],
      ]
  const option = (value: string, label: string, selected: string | undefined) => (
    <option value={value} selected={selected === value}>
      {label}
    </option>
  )
  return (
    <form class="filters" method="get" action="/portal" role="search">
      <label>
        Search
        <input type="search" name="q" value={p.q ?? ''} placeholder="id, slug, owner, host" />
      </label>
      <label>
        State
        <select name="state">
          {option('active', 'Active', p.state)}
          {option('ended', 'Ended', p.state)}
          {option('all', 'All', p.state)}
        </select>
      </label>
      <label>
        Owner
        <select name="scope">{scopes.map(([value, label]) => option(value, label, p.scope))}</select>
      </label>
      <label>
        Provider
        <select name="provider">
          {option('', 'Any', p.provider ?? '')}
          {PROVIDERS.map((name) => option(name, name, p.provider))}
        </select>
      </label>
      <label>
        Target
        <select name="target">
          {option('', 'Any', p.target ?? '')}
          {TARGETS.map((name) => option(name, name, p.target))}
        </select>
      </label>
      <input type="hidden" name="sort" value={p.sort} />
      <input type="hidden" name="dir" value={p.dir} />
      <button type="submit">Filter</button>
    </form>
  )
}

function LeaseRow({ lease, caller, now }: { lease: LeaseRecord; caller: PortalCaller; now: Date }) {
  const mine = lease.owner === caller.identity.owner && lease.org === caller.identity.org
  const commands = leaseCommands(lease)
  const live = lease.state === 'active' || lease.state === 'provisioning'
  return (
    <tr>
      <td>
        <a href={`/portal/leases/${lease.id}`}>{lease.slug || lease.id}</a>
        <div class="muted mono">{lease.id}</div>
      </td>
      <td>
        <span class={`pill ${stateTone(lease.state)}`}>{lease.state}</span>
      </td>
      <td>
        <span class="badge">{lease.provider}</span> <span class="badge">{lease.target}</span>
        {lease.class ? (
          <>
            {' '}
            <span class="badge">{lease.class}</span>
          </>
        ) : null}
      </td>
      <td class="wide">{mine ? 'me' : `${lease.owner} (${lease.org})`}</td>
      <td>
        <time datetime={lease.createdAt}>{relativeTime(lease.createdAt, now)}</time>
      </td>
      <td class="wide">{live ? <time datetime={lease.expiresAt}>{relativeTime(lease.expiresAt, now)}</time> : '—'}</td>
      <td class="wide">
        {live ? (
          <>
            <CopyCommand command={commands.ssh} label="ssh command" />
            <CopyCommand command={commands.run} label="run command" />
            <CopyCommand command={commands.stop} label="stop command" />
          </>
        ) : (
          <span class="muted">ended</span>
        )}
      </td>
    </tr>
  )
}

export function LeaseGridPage({ deps, caller, raw }: { deps: FleetDeps; caller: PortalCaller; raw: LeaseGridParams }) {
  const view = gridView(raw, caller)
  const now = deps.now()
  const { leases, total } = leaseGrid(deps.storage, caller.identity, view.query)
  const pages = Math.max(1, Math.ceil(total / GRID_PAGE_SIZE))
  return (
    <>
      <h1>Leases</h1>
      <Filters view={view} caller={caller} />
      <p class="muted" aria-live="polite">
        {total === 1 ? '1 lease' : `${total} leases`}
        {pages > 1 ? ` · page ${view.page} of ${pages}` : ''}
      </p>
      <TableWrap card label="Leases">
        <table>
          <caption class="muted">Leases visible to you</caption>
          <thead>
            <tr>
              <SortHeader view={view} column="slug" label="Lease" />
              <SortHeader view={view} column="state" label="State" />
              <SortHeader view={view} column="provider" label="Machine" />
              <SortHeader view={view} column="owner" label="Owner" wide />
              <SortHeader view={view} column="created" label="Created" />
              <SortHeader view={view} column="expires" label="Expires" wide />
              <th scope="col" class="wide">
                Commands
              </th>
            </tr>
          </thead>
          <tbody>
            {leases.length ? (
              leases.map((lease) => <LeaseRow lease={lease} caller={caller} now={now} />)
            ) : (
              <tr>
                <td colspan={7} class="muted">
                  No leases match. Start one with <code>crabbox warmup</code>.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </TableWrap>
      <nav class="pager" aria-label="Pages">
        {view.page > 1 ? <a href={gridHref(view.params, { page: String(view.page - 1) })}>Previous page</a> : null}
        {view.page < pages ? <a href={gridHref(view.params, { page: String(view.page + 1) })}>Next page</a> : null}
      </nav>
      <RunnerSection deps={deps} caller={caller} />
    </>
  )
}
