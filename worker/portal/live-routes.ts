import * as v from 'valibot'
import { defineRoute, type RouteSpec } from '../fleet/route-spec.js'
import { liveRunScriptResponse, LIVE_RUN_SCRIPT_PATH } from './live-run.js'

/** The live pages' static script (one asset; pages load it with their CSP nonce). */
export const LIVE_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'GET',
      path: LIVE_RUN_SCRIPT_PATH,
      summary: "The run page's live script: follows a running run over the control WebSocket",
      auth: 'user',
      response: v.pipe(v.string(), v.metadata({ contentMediaType: 'text/javascript' })),
    },
    () => liveRunScriptResponse(),
  ),
]
