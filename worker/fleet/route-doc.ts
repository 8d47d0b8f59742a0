import type * as v from 'valibot'
export interface RouteDoc {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE'
  path: string                 // Hono path syntax, e.g. '/v1/leases/:id/heartbeat'
  summary: string              // one line
  auth: 'none' | 'user' | 'admin'
  params?: Record<string, v.GenericSchema>   // path params
  query?: v.GenericSchema      // valibot object schema from src/protocol
  body?: v.GenericSchema       // valibot request body schema from src/protocol
  response?: v.GenericSchema   // 2xx JSON body schema when src/protocol has one
  websocket?: boolean          // upgrade routes (/v1/control)
}
