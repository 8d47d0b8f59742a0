import { raw } from 'hono/html'
import type { Child } from 'hono/jsx'
import { CSRF_FIELD } from './session.js'

/**
 * The page shell every portal page shares: one stylesheet (inline, with the page's CSP
 * nonce), light and dark from the system setting, a skip link, the navigation and the
 * sign-out form. Everything is server-rendered JSX: values are escaped by the renderer,
 * and no page writes raw HTML.
 */

export type NavItem = 'leases' | 'usage' | 'none'

export interface ShellProps {
  title: string
  /** The CSP nonce of this response (hono/secure-headers). */
  nonce: string
  /** Who is signed in, shown in the header. */
  who?: string
  /** Cookie sessions: the CSRF token for the sign-out form. */
  csrf?: string
  active?: NavItem
  children?: Child
  /** Extra elements for the end of <body> (nonce'd scripts of live pages). */
  tail?: Child
}

const STYLE = `
:root{color-scheme:light dark;--bg:#f7f7f8;--fg:#18181b;--muted:#52525b;--card:#fff;--line:#d4d4d8;--accent:#1d4ed8;
--ok:#166534;--ok-bg:#dcfce7;--warn:#854d0e;--warn-bg:#fef9c3;--bad:#991b1b;--bad-bg:#fee2e2;--info-bg:#e0e7ff;--info:#3730a3}
@media (prefers-color-scheme:dark){:root{--bg:#111113;--fg:#ececef;--muted:#a1a1aa;--card:#1c1c20;--line:#3f3f46;--accent:#93b4ff;
--ok:#86efac;--ok-bg:#14351f;--warn:#fde68a;--warn-bg:#3a2f0b;--bad:#fca5a5;--bad-bg:#3f1515;--info-bg:#23264a;--info:#c7d2fe}}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;background:var(--bg);color:var(--fg)}
a{color:var(--accent)}
a:focus-visible,button:focus-visible,input:focus-visible,select:focus-visible,summary:focus-visible{outline:2px solid var(--accent);outline-offset:2px}
.skip{position:absolute;left:-999px;top:0;background:var(--card);padding:.5rem 1rem;z-index:10}
.skip:focus{left:.5rem}
header.top{display:flex;flex-wrap:wrap;gap:.5rem 1.5rem;align-items:center;padding:.75rem 1rem;border-bottom:1px solid var(--line);background:var(--card)}
header.top .brand{font-weight:700;text-decoration:none;color:var(--fg)}
nav ul{display:flex;gap:1rem;list-style:none;margin:0;padding:0}
nav a[aria-current=page]{font-weight:700;text-decoration:none}
header.top .who{margin-left:auto;color:var(--muted);display:flex;gap:.75rem;align-items:center;overflow-wrap:anywhere}
main{max-width:80rem;margin:0 auto;padding:1rem}
h1{font-size:1.4rem;margin:.25rem 0 1rem}
h2{font-size:1.1rem;margin:0 0 .75rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:.5rem;padding:1rem;margin:0 0 1rem;overflow-wrap:anywhere}
.grid{display:grid;gap:1rem;grid-template-columns:repeat(auto-fit,minmax(18rem,1fr))}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:0}
dl.facts dt{color:var(--muted)}
dl.facts dd{margin:0}
.table-wrap{overflow-x:auto}
table{border-collapse:collapse;width:100%;overflow-wrap:normal}
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th a{color:inherit}
.pill,.badge{display:inline-block;padding:0 .5rem;border-radius:1rem;font-size:.8rem;white-space:nowrap;border:1px solid var(--line)}
.pill.ok{background:var(--ok-bg);color:var(--ok)}
.pill.warn{background:var(--warn-bg);color:var(--warn)}
.pill.bad{background:var(--bad-bg);color:var(--bad)}
.pill.info,.badge{background:var(--info-bg);color:var(--info)}
.muted{color:var(--muted)}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85rem}
pre{white-space:pre-wrap;word-break:break-word;background:var(--bg);border:1px solid var(--line);border-radius:.4rem;padding:.75rem;max-height:32rem;overflow:auto;margin:0}
pre.live-log{height:min(60vh,32rem);max-height:none}
.cmd{display:flex;gap:.5rem;align-items:center;margin:.25rem 0}
.cmd code{flex:1;background:var(--bg);border:1px solid var(--line);border-radius:.3rem;padding:.2rem .4rem;overflow-wrap:anywhere}
form.inline{display:inline}
form.filters{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end;margin:0 0 1rem}
label{display:flex;flex-direction:column;align-items:flex-start;font-size:.85rem;color:var(--muted);gap:.15rem}
input,select,button{font:inherit;padding:.3rem .5rem;border:1px solid var(--line);border-radius:.3rem;background:var(--card);color:var(--fg)}
button{cursor:pointer}
button.danger{border-color:var(--bad);color:var(--bad)}
.panel{border-left:4px solid var(--bad)}
.pager{display:flex;gap:1rem;margin-top:.75rem}
time[data-countdown]{font-variant-numeric:tabular-nums}
svg.spark{width:100%;height:3rem;display:block}
svg.spark polyline{fill:none;stroke:var(--accent);stroke-width:2}
svg.bars{max-width:100%;height:auto;display:block}
figure{margin:0 0 .75rem}
svg.bars .bar{fill:var(--accent)}
svg.bars .track{fill:var(--line)}
svg.bars .cap{stroke:var(--bad);stroke-width:2}
svg.bars text{fill:var(--fg);font-size:12px}
@media (max-width:40rem){th.wide,td.wide{display:none}main{padding:.5rem}}
`

/**
 * The page's only script besides live pages': copy buttons (`<button data-copy="…">`) and
 * expiry countdowns (`<time data-countdown datetime="…">`). A constant, trusted text
 * (the renderer would escape it, and a script is not HTML); it runs under the nonce.
 */
const PAGE_SCRIPT = `document.addEventListener('click',function(e){var b=e.target.closest&&e.target.closest('button[data-copy]');
if(!b||!navigator.clipboard)return;navigator.clipboard.writeText(b.getAttribute('data-copy')).then(function(){
var t=b.textContent;b.textContent='Copied';setTimeout(function(){b.textContent=t},1200)})});
(function(){var ts=document.querySelectorAll('time[data-countdown]');if(!ts.length)return;function tick(){var now=Date.now();
ts.forEach(function(t){var s=Math.round((Date.parse(t.getAttribute('datetime'))-now)/1000);t.textContent=s<=0?'expired':
'in '+(s>=3600?Math.floor(s/3600)+' h ':'')+Math.floor(s%3600/60)+' min '+String(s%60).padStart(2,'0')+' s'})}
tick();setInterval(tick,1000)})()`

/**
 * A table that may scroll sideways on a narrow screen: a focusable region, so a keyboard
 * can scroll it too.
 */
export function TableWrap({ label, card, children }: { label: string; card?: boolean; children?: Child }) {
  return (
    <div class={card ? 'table-wrap card' : 'table-wrap'} tabindex={0} role="region" aria-label={label}>
      {children}
    </div>
  )
}

/** A command with a copy button; the text stays selectable without script. */
export function CopyCommand({ command, label }: { command: string; label?: string }) {
  return (
    <div class="cmd">
      <code>{command}</code>
      <button type="button" data-copy={command} aria-label={`Copy ${label ?? 'command'}`}>
        Copy
      </button>
    </div>
  )
}

/** The sign-out control: a form (POST, CSRF token), so no other site can sign a person out. */
function SignOut({ csrf }: { csrf?: string }) {
  if (!csrf) return null
  return (
    <form class="inline" method="post" action="/portal/logout">
      <input type="hidden" name={CSRF_FIELD} value={csrf} />
      <button type="submit">Sign out</button>
    </form>
  )
}

export function Shell(props: ShellProps) {
  const current = (item: NavItem) => (props.active === item ? { 'aria-current': 'page' as const } : {})
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="color-scheme" content="light dark" />
        <title>{`${props.title} · Crabbox`}</title>
        <style nonce={props.nonce}>{raw(STYLE)}</style>
      </head>
      <body>
        <a class="skip" href="#main">
          Skip to content
        </a>
        <header class="top">
          <a class="brand" href="/portal">
            Crabbox
          </a>
          <nav aria-label="Portal">
            <ul>
              <li>
                <a href="/portal" {...current('leases')}>
                  Leases
                </a>
              </li>
              <li>
                <a href="/portal/usage" {...current('usage')}>
                  Usage
                </a>
              </li>
            </ul>
          </nav>
          {props.who ? (
            <div class="who">
              <span>{props.who}</span>
              <SignOut csrf={props.csrf} />
            </div>
          ) : null}
        </header>
        <main id="main" tabindex={-1}>
          {props.children}
        </main>
        <script nonce={props.nonce}>{raw(PAGE_SCRIPT)}</script>
        {props.tail}
      </body>
    </html>
  )
}

export interface ErrorPanelProps {
  status: number
  title: string
  message: string
}

/** An error in the page's own words, with the API's meaning (404 not found, 403 manage required, 409 unavailable). */
export function ErrorPanel(props: ErrorPanelProps) {
  return (
    <section class="card panel" role="alert" aria-labelledby="error-title">
      <h1 id="error-title">{props.title}</h1>
      <p>{props.message}</p>
      <p class="muted">HTTP {props.status}</p>
      <p>
        <a href="/portal">Back to leases</a>
      </p>
    </section>
  )
}

/** A card's name/value list; rows without a value are left out. */
export function Facts({ rows }: { rows: [string, unknown][] }) {
  return (
    <dl class="facts">
      {rows
        .filter(([, value]) => value !== undefined && value !== '')
        .map(([name, value]) => (
          <>
            <dt>{name}</dt>
            <dd>{value}</dd>
          </>
        ))}
    </dl>
  )
}
