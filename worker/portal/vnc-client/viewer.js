// The WebVNC page's client (browser code): noVNC's RFB client on the viewer socket
// `/portal/leases/{id}/vnc/viewer?viewer=<id>`, which the lease's relay object pairs with one
// agent socket of the `crabbox webvnc` bridge. scripts/build-portal-assets.js bundles this file
// with @novnc/novnc into one script (worker/portal/generated/vnc-viewer.js) that the broker
// serves at /portal/assets/vnc-viewer.js; the page loads it with its CSP nonce.
//
// What it does:
// - the status pill follows `vnc/status?viewer=` (every 2 s) and the socket's own state;
// - the first viewer controls, the others observe (view only) until they take control;
// - clipboard both ways: text sent from the page goes into the remote session (RFB
//   ClientCutText); text the remote session copies (ServerCutText) shows in the page, with a
//   copy button; Ctrl/Cmd+V over the screen sends the local clipboard, then Ctrl+V;
// - a lost socket reconnects with backoff (250 ms doubling to 5 s, reset after a connection
//   that stayed up 5 s);
// - the VNC password comes from the URL fragment (`#password=…`, as `crabbox webvnc` prints
//   it), else from the password form.
//
// It writes data-state, data-connections, data-role and data-remote-clipboard on #vnc for the
// browser tests, and only ever sets textContent.
import RFB from '@novnc/novnc'

const XK_CONTROL_L = 0xffe3
const XK_V = 0x0076
const BACKOFF_MIN_MS = 250
const BACKOFF_MAX_MS = 5000
const STABLE_MS = 5000
const STATUS_EVERY_MS = 2000

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(8))
  return 'viewer_' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
}

function fragmentCredentials() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''))
  const password = params.get('password')
  const username = params.get('username')
  return password ? { password, ...(username ? { username } : {}) } : undefined
}

/** The page's elements and the viewer's state, shared by the functions below. */
function viewerState(root) {
  const el = (id) => document.getElementById(id)
  return {
    root,
    base: root.getAttribute('data-base') || '',
    screen: el('vnc-screen'),
    pill: el('vnc-pill'),
    message: el('vnc-message'),
    takeButton: el('vnc-take'),
    fullButton: el('vnc-fullscreen'),
    remoteText: el('vnc-remote-clipboard'),
    copyButton: el('vnc-copy'),
    sendText: el('vnc-send-text'),
    sendButton: el('vnc-send'),
    passwordForm: el('vnc-password-form'),
    passwordInput: el('vnc-password'),
    viewerID: randomId(),
    credentials: fragmentCredentials(),
    rfb: null,
    role: 'none',
    connections: 0,
    failures: 0,
    openedAt: 0,
    timer: 0,
    socketState: 'connecting',
    statusMessage: '',
  }
}

const mark = (s, name, value) => s.root.setAttribute('data-' + name, String(value))

function say(s, text) {
  if (s.message.textContent !== text) s.message.textContent = text
}

function render(s) {
  mark(s, 'state', s.socketState)
  mark(s, 'role', s.role)
  const [text, tone] =
    s.socketState === 'connected'
      ? s.role === 'observer'
        ? ['observing', 'info']
        : ['connected', 'ok']
      : s.socketState === 'connecting'
        ? ['connecting', 'warn']
        : ['disconnected', 'bad']
  s.pill.textContent = text
  s.pill.className = 'pill ' + tone
  s.takeButton.hidden = !(s.socketState === 'connected' && s.role === 'observer')
  if (s.rfb) s.rfb.viewOnly = s.role === 'observer'
  say(s, s.passwordForm.hidden ? s.statusMessage : 'The VNC server asks for its password.')
}

function viewerUrl(s) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:'
  return `${scheme}//${location.host}${s.base}/viewer?viewer=${encodeURIComponent(s.viewerID)}`
}

/** One RFB client on a fresh viewer socket; a lost one schedules the next. */
function connect(s) {
  s.timer = 0
  s.socketState = 'connecting'
  render(s)
  const client = new RFB(s.screen, viewerUrl(s), { shared: true, ...(s.credentials ? { credentials: s.credentials } : {}) })
  client.scaleViewport = true
  client.focusOnClick = true
  client.background = 'rgb(24, 24, 27)'
  client.addEventListener('connect', () => {
    s.connections++
    s.openedAt = Date.now()
    s.socketState = 'connected'
    mark(s, 'connections', s.connections)
    s.passwordForm.hidden = true
    render(s)
    void refresh(s)
  })
  client.addEventListener('disconnect', () => {
    if (s.rfb !== client) return
    s.rfb = null
    if (s.openedAt && Date.now() - s.openedAt >= STABLE_MS) s.failures = 0
    s.openedAt = 0
    s.socketState = 'disconnected'
    s.role = 'none'
    render(s)
    schedule(s)
  })
  client.addEventListener('credentialsrequired', () => {
    if (s.credentials) return client.sendCredentials(s.credentials)
    s.passwordForm.hidden = false
    s.passwordInput.focus()
    render(s)
  })
  client.addEventListener('securityfailure', (event) => {
    s.credentials = undefined
    s.statusMessage = 'VNC authentication failed: ' + (event.detail.reason || 'wrong password')
    render(s)
  })
  client.addEventListener('clipboard', (event) => {
    s.remoteText.value = event.detail.text
    mark(s, 'remote-clipboard', event.detail.text)
  })
  s.rfb = client
}

function schedule(s) {
  if (s.timer) return
  const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** s.failures)
  s.failures++
  s.timer = setTimeout(() => connect(s), delay)
  void refresh(s)
}

/** The broker's view (who controls, whether the bridge is up, the command to start it). */
async function refresh(s) {
  try {
    const response = await fetch(`${s.base}/status?viewer=${encodeURIComponent(s.viewerID)}`, { credentials: 'same-origin' })
    const status = await response.json()
    if (!response.ok) s.statusMessage = status.message || `status ${response.status}`
    else {
      if (!(status.viewerRole === 'none' && s.socketState === 'connected')) s.role = status.viewerRole
      s.statusMessage = status.message
    }
  } catch {
    s.statusMessage = 'The broker did not answer; retrying.'
  }
  render(s)
}

/** Local text into the remote session (RFB ClientCutText); only the controller may. */
function sendClipboard(s, text) {
  if (!s.rfb || s.socketState !== 'connected' || s.role === 'observer' || !text) return false
  s.rfb.clipboardPasteFrom(text)
  return true
}

function useCredentials(s, given) {
  s.credentials = given
  s.passwordForm.hidden = true
  render(s)
  if (s.rfb) s.rfb.sendCredentials(given)
}

function wireControls(s) {
  s.takeButton.addEventListener('click', async () => {
    const response = await fetch(`${s.base}/control`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ viewerID: s.viewerID }),
    })
    const status = await response.json()
    if (response.ok) s.role = status.viewerRole
    s.statusMessage = status.message
    render(s)
  })
  s.fullButton.addEventListener('click', () => {
    if (document.fullscreenElement) void document.exitFullscreen()
    else void s.screen.requestFullscreen?.()
  })
  s.copyButton.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(s.remoteText.value)
      say(s, 'Copied the remote clipboard.')
    } catch {
      s.remoteText.select()
      say(s, 'Select and copy the text above (the browser did not allow clipboard access).')
    }
  })
  s.sendButton.addEventListener('click', () => {
    say(s, sendClipboard(s, s.sendText.value) ? 'Sent to the remote clipboard.' : 'Not connected, or only observing.')
  })
  s.passwordForm.addEventListener('submit', (event) => {
    event.preventDefault()
    useCredentials(s, { password: s.passwordInput.value })
    s.passwordInput.value = ''
  })
  // A URL with the password opened over this page (same document): take it.
  window.addEventListener('hashchange', () => {
    const given = fragmentCredentials()
    if (given && !s.passwordForm.hidden) useCredentials(s, given)
    else if (given) s.credentials = given
  })
}

/**
 * Ctrl/Cmd+V over the screen: noVNC would send the keys alone. The key is kept from noVNC so
 * the browser pastes; the pasted text goes in as ClientCutText, then Ctrl+V as keys.
 */
function wirePaste(s) {
  s.screen.addEventListener(
    'keydown',
    (event) => {
      if ((event.ctrlKey || event.metaKey) && !event.altKey && event.key.toLowerCase() === 'v') event.stopPropagation()
    },
    true,
  )
  s.screen.addEventListener('paste', (event) => {
    const text = event.clipboardData?.getData('text/plain') ?? ''
    event.preventDefault()
    if (!sendClipboard(s, text)) return
    s.rfb.sendKey(XK_CONTROL_L, 'ControlLeft', true)
    s.rfb.sendKey(XK_V, 'KeyV')
    s.rfb.sendKey(XK_CONTROL_L, 'ControlLeft', false)
  })
}

function start(root) {
  const s = viewerState(root)
  wireControls(s)
  wirePaste(s)
  mark(s, 'viewer-id', s.viewerID)
  mark(s, 'connections', 0)
  setInterval(() => void refresh(s), STATUS_EVERY_MS)
  connect(s)
}

const root = document.getElementById('vnc')
if (root) start(root)
