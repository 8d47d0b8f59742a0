import { randomBytes } from 'node:crypto'
import { sshHost, type SshHost, type SshHostOptions } from './ssh-host.js'

/**
 * A runner with a real desktop, laid out as the desktop bootstrap leaves a
 * cloud runner: Xvfb on `:99`, openbox as the window manager, x11vnc on
 * 127.0.0.1:5900 (loopback of the host's own network namespace) with a
 * per-host password in /var/lib/crabbox/vnc.password, and xdotool, xclip and
 * scrot for input, clipboard and screenshots; autocutsel keeps x11vnc's cut buffer and the
 * CLIPBOARD/PRIMARY selections in step (x11vnc runs with -nosetclipboard -nosetprimary). Everything
 * (Xvfb as root, the rest as the host's runner user) runs inside its namespace, so it dies with the host.
 *
 * The X socket folder and /var/lib/crabbox are private to the host (Xvfb runs
 * as root with -nolock, as the lock file would sit in the machine's shared /tmp).
 * Needs the Debian packages xvfb openbox x11vnc xdotool xclip xterm scrot
 * x11-utils autocutsel (`.ci/run` installs them).
 */
export interface DesktopHost extends SshHost {
  display: ':99'
  vncPort: 5900
  vncPassword: string
  /** Starts (or restarts) one layer: the X server, the window manager or the VNC server. */
  startLayer(layer: DesktopLayer): Promise<void>
  /** Stops one layer, to check that `desktop doctor` names it. */
  stopLayer(layer: DesktopLayer): Promise<void>
  /** Runs a command as the runner user on the display, as a session on the box would. */
  onDisplay(command: string): Promise<{ code: number; stdout: string; stderr: string }>
}

export type DesktopLayer = 'xvfb' | 'wm' | 'vnc' | 'clipboard'

export const DESKTOP_TOOLS = ['Xvfb', 'openbox', 'x11vnc', 'xdotool', 'xclip', 'xterm', 'scrot', 'xdpyinfo', 'autocutsel'] as const

const q = (text: string) => `'${text.replaceAll("'", `'\\''`)}'`
const LOG = '/var/lib/crabbox'

const START: Record<DesktopLayer, string> = {
  xvfb: `Xvfb :99 -screen 0 1280x800x24 -nolisten tcp -nolock >${LOG}/xvfb.log 2>&1`,
  wm: `openbox >${LOG}/openbox.log 2>&1`,
  vnc: `x11vnc -display :99 -localhost -rfbport 5900 -passwdfile ${LOG}/vnc.password -forever -shared -noxdamage -quiet -nosetclipboard -nosetprimary >${LOG}/x11vnc.log 2>&1`,
  clipboard: `sh -c 'autocutsel -s PRIMARY & exec autocutsel -s CLIPBOARD' >${LOG}/autocutsel.log 2>&1`,
}
const PATTERN: Record<DesktopLayer, RegExp> = { xvfb: /^Xvfb :99/, wm: /^openbox/, vnc: /^x11vnc/, clipboard: /autocutsel/ }

export async function desktopHost(options: SshHostOptions = {}): Promise<DesktopHost> {
  const host = await sshHost({
    ...options,
    privateDirs: [...new Set([...(options.privateDirs ?? []), '/tmp/.X11-unix', '/var/lib/crabbox'])],
  })
  const asUser = (command: string) =>
    host.run(`cd ${q(host.home)} && runuser -u ${host.user} -- env DISPLAY=:99 HOME=${q(host.home)} sh -c ${q(command)}`)
  const must = async (what: string, command: string) => {
    const result = await asUser(command)
    if (result.code !== 0) throw new Error(`desktopHost: ${what} failed (${result.code}): ${result.stderr.trim()}`)
    return result
  }
  const waitFor = (what: string, check: string) =>
    must(what, `i=0; until ${check}; do i=$((i+1)); [ $i -ge 200 ] && exit 1; sleep 0.05; done`)
  const ready: Record<DesktopLayer, () => Promise<unknown>> = {
    xvfb: () => waitFor('Xvfb :99', 'xdpyinfo >/dev/null 2>&1'),
    wm: () => waitFor('openbox', `xprop -root _NET_SUPPORTING_WM_CHECK 2>/dev/null | grep -q window`),
    vnc: () => waitFor('x11vnc', `bash -c 'exec 3<>/dev/tcp/127.0.0.1/5900' 2>/dev/null`),
    // autocutsel has no socket to probe; it only needs to be up before a viewer copies.
    clipboard: () => waitFor('autocutsel', 'sleep 0.2'),
  }
  const vncPassword = randomBytes(6).toString('hex')
  try {
    for (const tool of DESKTOP_TOOLS) {
      const found = await host.run(`command -v ${tool}`)
      if (found.code !== 0)
        throw new Error(
          `desktopHost: ${tool} is not installed (apt-get install xvfb openbox x11vnc xdotool xclip xterm scrot x11-utils autocutsel)`,
        )
    }
    // The password file as the desktop bootstrap writes it: readable by the runner user only.
    await host.run(
      `install -d -m 0755 /tmp/.X11-unix ${LOG} && chmod 1777 /tmp/.X11-unix && chown ${host.user} ${LOG} && printf '%s\\n' ${vncPassword} > ${LOG}/vnc.password && chown ${host.user} ${LOG}/vnc.password && chmod 0600 ${LOG}/vnc.password`,
    )
    const desktop: DesktopHost = Object.assign(host, {
      display: ':99' as const,
      vncPort: 5900 as const,
      vncPassword,
      onDisplay: asUser,
      async startLayer(layer: DesktopLayer) {
        await desktop.stopLayer(layer)
        // Xvfb as root: only root may pass -nolock, and its lock file would sit in the machine's
        // shared /tmp (/tmp/.X99-lock), where the desktop host of another test run holds it.
        if (layer === 'xvfb') await host.run(`cd / && setsid nohup ${START.xvfb} </dev/null & exit 0`)
        else await must(`start ${layer}`, `setsid nohup ${START[layer]} </dev/null & exit 0`)
        await ready[layer]()
      },
      // By this host's own process list: the runner user is shared with every other test host.
      async stopLayer(layer: DesktopLayer) {
        const pids = async () => (await host.processes()).filter((p) => PATTERN[layer].test(p.command)).map((p) => p.pid)
        for (const pid of await pids()) {
          try {
            process.kill(pid, 'SIGTERM')
          } catch {}
        }
        for (const deadline = Date.now() + 5000; Date.now() < deadline && (await pids()).length;)
          await new Promise((r) => setTimeout(r, 50))
      },
    })
    for (const layer of ['xvfb', 'wm', 'vnc', 'clipboard'] as const) await desktop.startLayer(layer)
    return desktop
  } catch (error) {
    await host.stop()
    throw error
  }
}
