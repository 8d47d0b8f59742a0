import * as v from 'valibot'
import type { FleetContext, FleetDeps } from './deps.js'
import { formBody, jsonBody, pathParam, queryParams, type BodyOptions } from './request.js'
import type { RouteDoc } from './route-doc.js'

/** A route: its documentation plus the handler the Fleet app runs for it. */
export interface RouteSpec extends RouteDoc {
  handler: (c: FleetContext, deps: FleetDeps) => Response | Promise<Response>
}

type Out<S> = S extends v.GenericSchema ? v.InferOutput<S> : never
type Params<D extends RouteDoc> = NonNullable<D['params']>

/**
 * Reads a request through the schemas of its route entry, so validation and
 * documentation are the same schema objects. Each read happens when the handler
 * asks for it, in the handler's order (which decides the first error reported).
 */
export interface RouteInput<D extends RouteDoc> {
  param<K extends keyof Params<D> & string>(name: K): Out<Params<D>[K]>
  query(): Out<D['query']>
  /** The query checked without throwing, for routes that answer bad input their own way. */
  safeQuery(): { success: true; output: Out<D['query']> } | { success: false }
  body(options?: BodyOptions): Promise<Out<D['body']>>
}

function routeInput<D extends RouteDoc>(doc: D, c: FleetContext): RouteInput<D> {
  const need = <S>(schema: S | undefined, what: string): S => {
    if (!schema) throw new Error(`route ${doc.method} ${doc.path} documents no ${what}`)
    return schema
  }
  // The generic output types are the schemas' own; the checks below are the runtime side of them.
  const input: RouteInput<RouteDoc> = {
    param: (name: string) => pathParam(c, name, need(doc.params?.[name], `path parameter ${name}`)),
    query: () => queryParams(c, need(doc.query, 'query')),
    safeQuery: () => {
      const result = v.safeParse(need(doc.query, 'query'), c.req.query())
      return result.success ? { success: true as const, output: result.output } : { success: false as const }
    },
    body: (options) =>
      doc.bodyMediaType === 'application/x-www-form-urlencoded'
        ? formBody(c, need(doc.body, 'body'), options)
        : jsonBody(c, need(doc.body, 'body'), options),
  }
  return input as RouteInput<D>
}

/** A route entry whose handler reads its input through the entry's own schemas. */
export function defineRoute<const D extends RouteDoc>(
  doc: D,
  handler: (c: FleetContext, deps: FleetDeps, input: RouteInput<D>) => Response | Promise<Response>,
): RouteSpec {
  return { ...doc, handler: (c, deps) => handler(c, deps, routeInput(doc, c)) }
}
