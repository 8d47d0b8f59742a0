/**
 * The HTML pages GitHub login shows a person in the browser: plain results, and the
 * form that asks for the code `crabbox login` printed. No script and no frames; every
 * value is escaped; forms post back to this origin only.
 */

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

const PAGE_HEADERS: Record<string, string> = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'content-security-policy': "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  // The callback URL carries GitHub's code and the login's state: never a referrer elsewhere.
  // (`same-origin`, not `no-referrer`: that would make the form's own POST send `Origin: null`.)
  'referrer-policy': 'same-origin',
}

function page(status: number, title: string, body: string, headers: Record<string, string> = {}): Response {
  const html =
    '<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">' +
    `<title>${escapeHtml(title)}</title></head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>`
  return new Response(html, { status, headers: { ...PAGE_HEADERS, ...headers } })
}

export function htmlPage(status: number, title: string, message: string, headers: Record<string, string> = {}): Response {
  return page(status, title, `<p>${escapeHtml(message)}</p>`, headers)
}

export interface ConfirmPageInput {
  state: string
  confirmToken: string
  /** The GitHub login that approved. */
  login: string
  /** Why the previous code was refused, if one was. */
  error?: string
}

/** The page after GitHub approves a CLI login: enter the code from the terminal. */
export function confirmPage(status: number, input: ConfirmPageInput): Response {
  const body = [
    input.error ? `<p><strong>${escapeHtml(input.error)}</strong></p>` : '',
    `<p>GitHub approved signing in as <strong>${escapeHtml(input.login)}</strong>. To finish, enter the code that`,
    ' <code>crabbox login</code> shows in your terminal.</p>',
    '<p>If you did not just run <code>crabbox login</code> yourself, close this page: someone else started this login',
    ' and would get access as you. Never enter a code that someone sent you.</p>',
    // Relative action: the form posts next to the callback, on the broker's own origin.
    '<form method="post" action="confirm">',
    `<input type="hidden" name="state" value="${escapeHtml(input.state)}">`,
    `<input type="hidden" name="confirmToken" value="${escapeHtml(input.confirmToken)}">`,
    '<label for="userCode">Code from your terminal</label> ',
    '<input id="userCode" name="userCode" required autofocus autocomplete="off" autocapitalize="characters" spellcheck="false"',
    ' maxlength="16" placeholder="XXXX-XXXX"> ',
    '<button type="submit">Confirm</button>',
    '</form>',
  ].join('')
  return page(status, 'Confirm your Crabbox login', body)
}
