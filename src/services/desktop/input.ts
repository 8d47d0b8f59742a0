import type { ServiceContext } from '../context.js'
import { usageError } from '../../errors.js'
import { shellQuote } from '../../transport/ssh/exec.js'
import { DISPLAY, desktopLease, failed, remote, rescueFor, type DesktopFlags, type DesktopLease } from './session.js'

/**
 * `desktop click`, `type`, `paste`, `key`: xdotool and the clipboard (xclip,
 * else xsel) on the runner's display, each bounded in time.
 */

const LIMIT_MS = 30_000

async function onDesktop(context: ServiceContext, flags: DesktopFlags, command: string, script: string, stdin?: string): Promise<string> {
  const lease = await desktopLease(context, flags, command, 'input')
  try {
    const result = await remote(lease, `export DISPLAY=${DISPLAY}\n${script}`, {
      limitMs: LIMIT_MS,
      layer: 'input',
      rescue: rescueFor(lease, 'input'),
      stdin,
    })
    if (result.code !== 0) throw inputFailed(lease, result.stderr)
    return lease.leaseId
  } finally {
    await lease.close()
  }
}

function inputFailed(lease: DesktopLease, stderr: string) {
  const text = stderr.trim().split('\n').slice(-3).join(' ')
  if (/xdotool: (command )?not found|xclip.*not found|no clipboard tool/.test(text))
    return failed(lease, 'input', text, [`${`crabbox ssh --id ${lease.name}`} -- sudo apt-get install -y xdotool xclip`])
  if (/Can't open display|cannot open display|Failed creating new xdo instance/i.test(text))
    return failed(lease, 'x-server', `no X server answers on ${DISPLAY} (${text})`)
  return failed(lease, 'input', text || 'the input command failed')
}

export async function desktopClick(context: ServiceContext, flags: DesktopFlags & { x: number; y: number }): Promise<{ leaseId: string }> {
  if (!Number.isInteger(flags.x) || !Number.isInteger(flags.y) || flags.x < 0 || flags.y < 0)
    throw usageError('--x and --y must be whole numbers of pixels, 0 or more')
  return { leaseId: await onDesktop(context, flags, 'desktop click', `xdotool mousemove ${flags.x} ${flags.y} click 1`) }
}

/** Puts stdin on the clipboard (xclip, else xsel: they stay to serve it, so their output must not hold the channel), then Ctrl+V. */
const PASTE = `if command -v xclip >/dev/null 2>&1; then xclip -selection clipboard -in >/dev/null 2>&1
elif command -v xsel >/dev/null 2>&1; then xsel --clipboard --input >/dev/null 2>&1
else echo "no clipboard tool (xclip or xsel): xclip not found" >&2; exit 127; fi
xdotool key --clearmodifiers ctrl+v`

export async function desktopPaste(context: ServiceContext, flags: DesktopFlags & { text: string }): Promise<{ leaseId: string }> {
  if (!flags.text) throw usageError('nothing to paste', 'pass --text TEXT or pipe the text on stdin')
  return { leaseId: await onDesktop(context, flags, 'desktop paste', PASTE, flags.text) }
}

/** Simple words are typed key by key; anything else (symbols, newlines, long text) goes through the clipboard. */
export const typesDirectly = (text: string) => /^[A-Za-z0-9 ]{1,64}$/.test(text)

export async function desktopType(
  context: ServiceContext,
  flags: DesktopFlags & { text: string },
): Promise<{ leaseId: string; via: 'keys' | 'paste' }> {
  if (!flags.text) throw usageError('nothing to type', 'pass --text TEXT')
  if (!typesDirectly(flags.text)) return { leaseId: await onDesktop(context, flags, 'desktop type', PASTE, flags.text), via: 'paste' }
  const script = `xdotool type --clearmodifiers --delay 20 -- ${shellQuote(flags.text)}`
  return { leaseId: await onDesktop(context, flags, 'desktop type', script), via: 'keys' }
}

export async function desktopKey(context: ServiceContext, flags: DesktopFlags & { keys: string[] }): Promise<{ leaseId: string }> {
  const keys = flags.keys.flatMap((k) => k.split(/\s+/)).filter(Boolean)
  if (!keys.length) throw usageError('no keys given', 'e.g. crabbox desktop key --id blue-crab ctrl+l Return')
  for (const key of keys)
    if (!/^[A-Za-z0-9_+]+$/.test(key)) throw usageError(`${JSON.stringify(key)} is not an xdotool key name (e.g. ctrl+c, Return, F5)`)
  return { leaseId: await onDesktop(context, flags, 'desktop key', `xdotool key --clearmodifiers ${keys.join(' ')}`) }
}
