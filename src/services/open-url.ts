import { spawn } from 'node:child_process'

/**
 * Opens a URL (a web page, or `vnc://…` for the system's VNC viewer) with the desktop's
 * opener; false when there is no way to (headless, CI) or the opener cannot start.
 */
export function openUrl(url: string): boolean {
  const command = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'rundll32' : 'xdg-open'
  const args = process.platform === 'win32' ? ['url.dll,FileProtocolHandler', url] : [url]
  if (process.platform === 'linux' && !process.env.DISPLAY && !process.env.WAYLAND_DISPLAY) return false
  try {
    const child = spawn(command, args, { stdio: 'ignore', detached: true })
    child.on('error', () => undefined)
    child.unref()
    return true
  } catch {
    return false
  }
}
