import type { GenericSchema } from 'valibot'

/**
 * What the broker says about one HTTP route: enough to list it, check its auth and
 * generate an API document. Kept free of handlers so a generator can import it alone.
 */
export interface RouteDoc {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE'
  /** Hono path syntax, e.g. '/v1/leases/:id/heartbeat'. */
  path: string
  /** One line. */
  summary: string
  auth: 'none' | 'user' | 'admin'
  /** Path parameters. */
  params?: Record<string, GenericSchema>
  /** Query schema from src/protocol. */
  query?: GenericSchema
  /** Request body schema from src/protocol. */
  body?: GenericSchema
  /** How the body is encoded; JSON unless a browser form posts it. */
  bodyMediaType?: 'application/json' | 'application/x-www-form-urlencoded'
  /** 2xx JSON body schema, when src/protocol has one. */
  response?: GenericSchema
  /** Upgrade routes (/v1/control). */
  websocket?: boolean
}
