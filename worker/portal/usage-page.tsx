import * as v from 'valibot'
import { UsageQuery, type CostLimits, type UsageGroup, type UsageSummary } from '../../src/protocol/usage.js'
import { costLimits } from '../fleet/caps.js'
import type { FleetDeps } from '../fleet/deps.js'
import { usageSelection, usageSummary } from '../fleet/usage.js'
import { Bars } from './charts.js'
import { usd } from './format.js'
import { TableWrap } from './layout.js'
import type { PortalCaller } from './page.js'

/**
 * `/portal/usage`: a month's spend and lease hours by owner and by org, a bar each with
 * the configured caps drawn on it. The selection is the API's (`GET /v1/usage`):
 * everyone sees their own owner and org; admins pick the scope (default: everyone).
 */

export const UsagePageQuery = v.object({
  scope: v.optional(v.pipe(v.string(), v.maxLength(8))),
  month: v.optional(v.pipe(v.string(), v.maxLength(8))),
})
export type UsagePageQuery = v.InferOutput<typeof UsagePageQuery>

/** Groups drawn and listed per section (largest reservation first), so the page stays small. */
export const USAGE_GROUPS_SHOWN = 30

const hours = (seconds: number) => `${(seconds / 3600).toFixed(1)} h`

function groupBars(groups: UsageGroup[]) {
  return groups.map((group) => ({
    label: group.key || '(none)',
    value: group.estimatedUSD,
    behind: group.reservedUSD,
    text: `${usd(group.estimatedUSD)} · ${hours(group.runtimeSeconds)}`,
  }))
}

function GroupTable({ groups, caption }: { groups: UsageGroup[]; caption: string }) {
  return (
    <TableWrap label={caption}>
      <table>
        <caption class="muted">{caption}</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Leases</th>
            <th scope="col">Active</th>
            <th scope="col">Lease hours</th>
            <th scope="col">Spend</th>
            <th scope="col">Reserved</th>
          </tr>
        </thead>
        <tbody>
          {groups.map((group) => (
            <tr>
              <td>{group.key || '(none)'}</td>
              <td>{group.leases}</td>
              <td>{group.activeLeases}</td>
              <td>{hours(group.runtimeSeconds)}</td>
              <td>{usd(group.estimatedUSD)}</td>
              <td>{usd(group.reservedUSD)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </TableWrap>
  )
}

function Section({ title, groups: all, cap, capName }: { title: string; groups: UsageGroup[]; cap: number; capName: string }) {
  const id = title.toLowerCase().replace(/\W+/g, '-')
  const groups = all.slice(0, USAGE_GROUPS_SHOWN)
  return (
    <section class="card" aria-labelledby={id}>
      <h2 id={id}>{title}</h2>
      <p class="muted">{cap > 0 ? `The red line is the ${capName} cap, ${usd(cap)} a month.` : `No ${capName} cap is set.`}</p>
      {groups.length ? (
        <>
          <Bars bars={groupBars(groups)} cap={cap} label={`${title}: spend per ${capName}, light part reserved`} />
          <GroupTable
            groups={groups}
            caption={`${title}, largest reservation first${all.length > groups.length ? ` (the first ${groups.length} of ${all.length})` : ''}`}
          />
        </>
      ) : (
        <p class="muted">No leases this month.</p>
      )}
    </section>
  )
}

function Totals({ usage, limits }: { usage: UsageSummary; limits: CostLimits }) {
  return (
    <section class="card" aria-labelledby="totals-title">
      <h2 id="totals-title">Totals for {usage.month}</h2>
      <dl class="facts">
        <dt>Leases</dt>
        <dd>
          {usage.leases} ({usage.activeLeases} active)
        </dd>
        <dt>Lease hours</dt>
        <dd>{hours(usage.runtimeSeconds)}</dd>
        <dt>Spend</dt>
        <dd>{usd(usage.estimatedUSD)}</dd>
        <dt>Reserved</dt>
        <dd>{usd(usage.reservedUSD)}</dd>
        <dt>Monthly cap</dt>
        <dd>{limits.maxMonthlyUSD > 0 ? usd(limits.maxMonthlyUSD) : 'none'}</dd>
      </dl>
    </section>
  )
}

export function UsagePage({ deps, caller, raw }: { deps: FleetDeps; caller: PortalCaller; raw: UsagePageQuery }) {
  const now = deps.now()
  const scope = caller.identity.admin ? (raw.scope === 'user' || raw.scope === 'org' ? raw.scope : 'all') : undefined
  const query = v.safeParse(UsageQuery, { ...(scope ? { scope } : {}), ...(raw.month ? { month: raw.month } : {}) })
  const selection = usageSelection(caller.identity, query.success ? query.output : {}, now)
  const usage = usageSummary(deps.storage, selection, now)
  const limits = costLimits(deps.env)
  return (
    <>
      <h1>Usage</h1>
      <form class="filters" method="get" action="/portal/usage">
        <label>
          Month
          <input name="month" value={usage.month} pattern="\d{4}-\d{2}" placeholder="2026-05" />
        </label>
        {caller.identity.admin ? (
          <label>
            Scope
            <select name="scope">
              <option value="all" selected={scope === 'all'}>
                everyone
              </option>
              <option value="org" selected={scope === 'org'}>
                my org
              </option>
              <option value="user" selected={scope === 'user'}>
                me
              </option>
            </select>
          </label>
        ) : null}
        <button type="submit">Show</button>
      </form>
      <p class="muted">
        {caller.identity.admin
          ? 'As an admin you see every owner.'
          : `Your own usage as ${caller.identity.owner} in ${caller.identity.org}.`}{' '}
        Spend is the estimate from lease hours and each machine's hourly rate; the reservation is what caps count.
      </p>
      <Totals usage={usage} limits={limits} />
      <Section title="By owner" groups={usage.byOwner} cap={limits.maxMonthlyUSDPerOwner} capName="per-owner" />
      <Section title="By org" groups={usage.byOrg} cap={limits.maxMonthlyUSDPerOrg} capName="per-org" />
    </>
  )
}
