import { raw } from 'hono/html'
import * as v from 'valibot'
import type { LeaseRecord } from '../../src/protocol/leases.js'
import { LeaseRef } from '../../src/protocol/leases.js'
import { defineRoute, type RouteSpec } from '../fleet/route-spec.js'
import { bridgeCommand, requireWebVnc } from '../fleet/webvnc.js'
import { VNC_VIEWER_SCRIPT } from './generated/vnc-viewer.js'
import { CopyCommand } from './layout.js'
import { visibleLease } from './lease-page.js'
import { guarded, page, type PortalCaller } from './page.js'

/**
 * `/portal/leases/{id}/vnc`: the WebVNC page. noVNC (the `@novnc/novnc` package, bundled with
 * the page's client by scripts/build-portal-assets.js) runs on the viewer socket; the page
 * holds the status pill, take control, fullscreen, both clipboard directions and the bridge
 * commands. A lease that cannot have WebVNC (not active, no desktop, no host) is a 409 panel
 * "WebVNC unavailable"; a lease without a running bridge gets the page, whose status says to
 * run the bridge command shown at the bottom.
 */

export const VNC_VIEWER_SCRIPT_PATH = '/portal/assets/vnc-viewer.js'

const VNC_STYLE = `
.vnc-bar{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;margin:0 0 .75rem}
.vnc-bar p{margin:0;flex:1;min-width:16rem}
.vnc-screen{height:min(75vh,50rem);background:#18181b;border-radius:.4rem;overflow:hidden}
.vnc-screen:fullscreen{height:100vh;border-radius:0}
.vnc-clip{display:grid;gap:1rem;grid-template-columns:repeat(auto-fit,minmax(18rem,1fr))}
.vnc-clip textarea{width:100%;font:inherit;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85rem;
padding:.3rem .5rem;border:1px solid var(--line);border-radius:.3rem;background:var(--bg);color:var(--fg)}
.vnc-clip label{align-items:stretch}
#vnc-password-form:not([hidden]){display:flex;gap:.5rem;align-items:end;margin:0 0 .75rem}
`

const q = (lease: LeaseRecord) => lease.slug || lease.id

function ViewerCard({ lease }: { lease: LeaseRecord }) {
  const base = `/portal/leases/${lease.id}/vnc`
  return (
    <section class="card" id="vnc" data-base={base} data-state="connecting" aria-labelledby="vnc-title">
      <div class="vnc-bar">
        <h1 id="vnc-title">
          WebVNC · <a href={`/portal/leases/${lease.id}`}>{q(lease)}</a>{' '}
          <span id="vnc-pill" class="pill warn">
            connecting
          </span>
        </h1>
        <p id="vnc-message" role="status" aria-live="polite">
          Connecting to the WebVNC bridge…
        </p>
        <button id="vnc-take" type="button" hidden>
          Take control
        </button>
        <button id="vnc-fullscreen" type="button">
          Fullscreen
        </button>
      </div>
      <form id="vnc-password-form" hidden>
        <label for="vnc-password">
          VNC password
          <input id="vnc-password" type="password" autocomplete="off" />
        </label>
        <button type="submit">Connect</button>
      </form>
      <div id="vnc-screen" class="vnc-screen" role="region" aria-label="Remote desktop"></div>
    </section>
  )
}

function ClipboardCard() {
  return (
    <section class="card" aria-labelledby="clip-title">
      <h2 id="clip-title">Clipboard</h2>
      <div class="vnc-clip">
        <div>
          <label for="vnc-remote-clipboard">
            Remote clipboard (copied on the desktop)
            <textarea id="vnc-remote-clipboard" rows={3} readonly></textarea>
          </label>
          <button id="vnc-copy" type="button">
            Copy to this computer
          </button>
        </div>
        <div>
          <label for="vnc-send-text">
            Text for the remote clipboard
            <textarea id="vnc-send-text" rows={3}></textarea>
          </label>
          <button id="vnc-send" type="button">
            Send to the desktop
          </button>
        </div>
      </div>
      <p class="muted">Ctrl+V (Cmd+V on a Mac) over the screen pastes this computer's clipboard into the remote session.</p>
    </section>
  )
}

function BridgeCard({ lease }: { lease: LeaseRecord }) {
  return (
    <section class="card" aria-labelledby="bridge-title">
      <h2 id="bridge-title">Bridge</h2>
      <p class="muted">
        The screen comes through the <code>crabbox webvnc</code> bridge, run on a machine that reaches the lease over SSH.
      </p>
      <CopyCommand command={bridgeCommand(lease)} label="bridge command" />
      <p class="muted">Stuck? Reset the relay and restart the bridge, or use a native viewer:</p>
      <CopyCommand command={`crabbox webvnc reset --id ${q(lease)}`} label="reset command" />
      <CopyCommand command={`crabbox vnc --id ${q(lease)}`} label="native VNC command" />
    </section>
  )
}

function VncPage({ lease, caller }: { lease: LeaseRecord; caller: PortalCaller }) {
  return (
    <>
      <style nonce={caller.nonce}>{raw(VNC_STYLE)}</style>
      <ViewerCard lease={lease} />
      <ClipboardCard />
      <BridgeCard lease={lease} />
    </>
  )
}

export const VNC_PAGE_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'GET',
      path: '/portal/leases/:id/vnc',
      summary: 'The WebVNC page: noVNC on the viewer socket, status, take control, clipboard both ways (HTML; 409 when unavailable)',
      auth: 'user',
      params: { id: LeaseRef },
      response: v.pipe(v.string(), v.metadata({ contentMediaType: 'text/html' })),
    },
    (c, deps, input) =>
      guarded(c, { 404: 'Lease not found', 409: 'WebVNC unavailable' }, (caller) => {
        const lease = visibleLease(deps, caller, input.param('id'))
        requireWebVnc(lease)
        const script = <script type="module" nonce={caller.nonce} src={VNC_VIEWER_SCRIPT_PATH}></script>
        return page(c, caller, `WebVNC ${q(lease)}`, <VncPage lease={lease} caller={caller} />, { tail: script })
      }),
  ),
  defineRoute(
    {
      method: 'GET',
      path: VNC_VIEWER_SCRIPT_PATH,
      summary: "The WebVNC page's client: noVNC and the page's controls, one ES module",
      auth: 'user',
      response: v.pipe(v.string(), v.metadata({ contentMediaType: 'text/javascript' })),
    },
    (c) => c.body(VNC_VIEWER_SCRIPT, 200, { 'content-type': 'text/javascript; charset=utf-8' }),
  ),
]
