/**
 * The browser's side of the broker's login confirmation page: read the form GitHub's
 * callback answered with and submit it with the code the user typed, as a browser would.
 */

const decodeEntities = (text: string) =>
  text
    .replace(/&#(\d+);/g, (_, code: string) => String.fromCharCode(Number(code)))
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&')

/** The hidden fields of the confirmation form in `html` (`state`, `confirmToken`). */
export function confirmFormFields(html: string): Record<string, string> {
  const fields: Record<string, string> = {}
  for (const match of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) fields[match[1]!] = decodeEntities(match[2]!)
  return fields
}

/**
 * The POST a browser makes when the user types `userCode` into the confirmation page
 * `html`, served at `pageUrl`: the form's action resolved against the page, its hidden
 * fields plus the code. `headers` adds to it (e.g. an `origin`).
 */
export function confirmFormRequest(pageUrl: string, html: string, userCode: string, headers: Record<string, string> = {}): Request {
  const action = /<form method="post" action="([^"]*)"/.exec(html)?.[1]
  if (action === undefined) throw new Error(`no confirmation form in the page:\n${html}`)
  return new Request(new URL(decodeEntities(action), pageUrl), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams({ ...confirmFormFields(html), userCode }).toString(),
  })
}
