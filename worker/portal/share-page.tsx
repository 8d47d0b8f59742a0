import * as v from 'valibot'
import { ApiError, ErrorCode, describeIssues } from '../../src/protocol/errors.js'
import { ShareDeleteRequest, SharePutRequest, type LeaseRecord, type ShareRole } from '../../src/protocol/leases.js'
import type { Identity } from '../auth/identity.js'
import type { FleetDeps } from '../fleet/deps.js'
import { requireManage } from '../fleet/lease-store.js'
import { deleteShare, getShare, putShare } from '../fleet/leases.js'
import { CSRF_FIELD } from './session.js'
import { CsrfField, type PortalCaller } from './page.js'

/**
 * `/portal/leases/{id}/share`: who else may use or manage a lease. The page and its
 * form need manage rights (403 otherwise, as on the API); the form's actions go through
 * the same share functions and schemas as `PUT`/`DELETE /v1/leases/{id}/share`.
 */

const Field = (max: number) => v.optional(v.pipe(v.string(), v.maxLength(max)))

export const ShareForm = v.object({
  action: v.picklist(['add-user', 'remove-user', 'set-org', 'clear'], 'add-user, remove-user, set-org or clear'),
  user: Field(320),
  role: Field(16),
  [CSRF_FIELD]: Field(128),
})
export type ShareForm = v.InferOutput<typeof ShareForm>

function parsed<S extends v.GenericSchema>(schema: S, value: unknown): v.InferOutput<S> {
  const result = v.safeParse(schema, value)
  if (!result.success) throw new ApiError(400, ErrorCode.invalidRequest, `invalid form: ${describeIssues(result.issues)}`)
  return result.output
}

/** Applies one form action to the lease's sharing. */
export function applyShareForm(deps: FleetDeps, identity: Identity, lease: LeaseRecord, form: ShareForm): void {
  const current = getShare(deps, identity, lease.id).share
  const role: ShareRole | undefined = form.role === 'use' || form.role === 'manage' ? form.role : undefined
  switch (form.action) {
    case 'add-user': {
      const user = form.user?.trim().toLowerCase()
      if (!user) throw new ApiError(400, ErrorCode.invalidRequest, 'name the user to share with (their email)')
      const body = parsed(SharePutRequest, {
        users: { ...current.users, [user]: role ?? 'use' },
        ...(current.org ? { org: current.org } : {}),
      })
      putShare(deps, identity, lease.id, body)
      return
    }
    case 'remove-user':
      deleteShare(deps, identity, lease.id, parsed(ShareDeleteRequest, { user: form.user ?? '' }))
      return
    case 'set-org': {
      // No valid role removes the org's share, as the reference form does.
      const body = parsed(SharePutRequest, { users: current.users ?? {}, ...(role ? { org: role } : {}) })
      putShare(deps, identity, lease.id, body)
      return
    }
    case 'clear':
      deleteShare(deps, identity, lease.id, {})
  }
}

function RoleSelect({ name, selected, none }: { name: string; selected?: string; none?: string }) {
  return (
    <select name={name}>
      {none !== undefined ? (
        <option value="" selected={!selected}>
          {none}
        </option>
      ) : null}
      <option value="use" selected={selected === 'use'}>
        use
      </option>
      <option value="manage" selected={selected === 'manage'}>
        manage
      </option>
    </select>
  )
}

export function SharePage({ deps, caller, lease, embed }: { deps: FleetDeps; caller: PortalCaller; lease: LeaseRecord; embed: boolean }) {
  requireManage(lease, caller.identity)
  const share = getShare(deps, caller.identity, lease.id).share
  const action = `/portal/leases/${lease.id}/share${embed ? '?embed=1' : ''}`
  const users = Object.entries(share.users ?? {}).sort(([a], [b]) => a.localeCompare(b))
  return (
    <>
      <h1>
        Share <a href={`/portal/leases/${lease.id}`}>{lease.slug || lease.id}</a>
      </h1>
      <section class="card" aria-labelledby="org-title">
        <h2 id="org-title">Organisation {lease.org}</h2>
        <form method="post" action={action}>
          <CsrfField caller={caller} />
          <input type="hidden" name="action" value="set-org" />
          <label>
            Role for everyone in {lease.org}
            <RoleSelect name="role" selected={share.org} none="not shared" />
          </label>
          <p>
            <button type="submit">Save org role</button>
          </p>
        </form>
      </section>
      <section class="card" aria-labelledby="users-title">
        <h2 id="users-title">People</h2>
        {users.length ? (
          <table>
            <caption class="muted">People this lease is shared with</caption>
            <thead>
              <tr>
                <th scope="col">User</th>
                <th scope="col">Role</th>
                <th scope="col">
                  <span class="muted">Action</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {users.map(([user, role]) => (
                <tr>
                  <td>{user}</td>
                  <td>{role}</td>
                  <td>
                    <form class="inline" method="post" action={action}>
                      <CsrfField caller={caller} />
                      <input type="hidden" name="action" value="remove-user" />
                      <input type="hidden" name="user" value={user} />
                      <button type="submit" aria-label={`Remove ${user}`}>
                        Remove
                      </button>
                    </form>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : (
          <p class="muted">Not shared with anyone by name.</p>
        )}
        <form class="filters" method="post" action={action}>
          <CsrfField caller={caller} />
          <input type="hidden" name="action" value="add-user" />
          <label>
            User (email)
            <input name="user" type="text" inputmode="email" required autocomplete="off" />
          </label>
          <label>
            Role
            <RoleSelect name="role" selected="use" />
          </label>
          <button type="submit">Add</button>
        </form>
      </section>
      <section class="card">
        <form method="post" action={action}>
          <CsrfField caller={caller} />
          <input type="hidden" name="action" value="clear" />
          <button class="danger" type="submit">
            Stop sharing with everyone
          </button>
        </form>
      </section>
    </>
  )
}
