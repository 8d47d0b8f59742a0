import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** One call the stand-in wrangler received. */
export interface WranglerCall {
  argv: string[]
  stdin: string
  cwd: string
  accountId?: string
  apiToken?: string
  /** Every file of the cwd's folder tree that holds `needle` (set with FAKE_WRANGLER_NEEDLE). */
  needleOnDisk: boolean
}

export interface FakeWrangler {
  /** The executable, for CRABBOX_WRANGLER. */
  bin: string
  dir: string
  calls(): WranglerCall[]
}

/**
 * A stand-in `wrangler` executable: records each call's arguments, stdin, cwd and Cloudflare
 * variables in a JSON-lines log, and answers like wrangler does. FAKE_WRANGLER_FAIL=<command>
 * (`secret`, `deploy`, `whoami`) makes that command exit 1; FAKE_WRANGLER_NEEDLE=<text> records
 * whether that text was written anywhere under the cwd when the call came.
 */
export function fakeWrangler(): FakeWrangler {
  const dir = mkdtempSync(join(tmpdir(), 'crabbox-fake-wrangler-'))
  const log = join(dir, 'calls.jsonl')
  const bin = join(dir, 'wrangler')
  writeFileSync(
    bin,
    `#!${process.execPath}
const fs = require('node:fs')
const path = require('node:path')
const argv = process.argv.slice(2)
let stdin = ''
try { stdin = fs.readFileSync(0, 'utf8') } catch {}
const needle = process.env.FAKE_WRANGLER_NEEDLE
const onDisk = (dir) => fs.readdirSync(dir, { withFileTypes: true }).some((e) => {
  const p = path.join(dir, e.name)
  return e.isDirectory() ? onDisk(p) : fs.readFileSync(p, 'utf8').includes(needle)
})
fs.appendFileSync(${JSON.stringify(log)}, JSON.stringify({ argv, stdin, cwd: process.cwd(), accountId: process.env.CLOUDFLARE_ACCOUNT_ID, apiToken: process.env.CLOUDFLARE_API_TOKEN, needleOnDisk: needle ? onDisk(process.cwd()) : false }) + '\\n')
const command = argv[0] === 'secret' ? 'secret' : argv[0]
if (process.env.FAKE_WRANGLER_FAIL === command) { console.error('✘ [ERROR] A request to the Cloudflare API failed.'); process.exit(1) }
if (argv[0] === 'whoami') { console.log(JSON.stringify({ loggedIn: true })); process.exit(0) }
if (argv[0] === 'secret' && argv[1] === 'list') { console.log(JSON.stringify([{ name: 'CRABBOX_SHARED_TOKEN', type: 'secret_text' }, { name: 'CRABBOX_PUBLIC_URL', type: 'secret_text' }])); process.exit(0) }
if (argv[0] === 'secret') { console.log('✨ Success!'); process.exit(0) }
if (argv[0] === 'deploy') { console.log('Uploaded ' + argv[argv.indexOf('--name') + 1] + '\\nhttps://example.workers.dev'); process.exit(0) }
console.error('fake wrangler: unknown command ' + argv.join(' ')); process.exit(2)
`,
  )
  chmodSync(bin, 0o755)
  return {
    bin,
    dir,
    calls: () =>
      existsSync(log)
        ? readFileSync(log, 'utf8')
            .trim()
            .split('\n')
            .filter(Boolean)
            .map((line) => JSON.parse(line) as WranglerCall)
        : [],
  }
}
