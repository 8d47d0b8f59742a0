import { randomBytes } from 'node:crypto'
import { shellQuote } from '../../transport/ssh/exec.js'

/** Words that only mean something to a shell: argv containing one of them is a script. */
const controlOperators = new Set(['&&', '||', ';', '|', '>', '>>', '<', '2>', '2>>', '&'])
/** A single argument with any of these is a shell snippet, not a program name. */
const shellSyntax = /[\s|&;<>()$`\\"'*?[\]#~{}]/

export interface RemoteCommand {
  /** What the runner's `sh` is given. */
  command: string
  /** Whether the argv went through `bash -lc` as a script rather than exec'd verbatim. */
  viaShell: boolean
}

/**
 * Runs "$@" in a process group of its own and forwards INT/TERM/HUP to the
 * whole group: sshd signals only its direct child, and a command tree must
 * not outlive Ctrl-C. It records the group in the pid file given as $1, so the
 * CLI can also signal the group out of band (servers that drop SSH signal
 * requests). Exits with the command's status.
 */
const groupRunner = [
  'pf=$1; shift',
  // Traps first, so a signal that arrives as soon as the command starts is forwarded too.
  'pid=',
  'for s in INT TERM HUP; do trap "[ -n \\"\\$pid\\" ] && kill -$s -- -\\$pid 2>/dev/null" $s; done',
  // While job control is on, bash reports a job that already ended ("[1]+ Done") on its own stderr,
  // which is the command's: the shell's stderr goes quiet for that window, the command keeps the real one.
  'exec 3>&2 2>/dev/null',
  'set -m',
  '"$@" 2>&3 3>&- &',
  'pid=$!',
  'set +m',
  'exec 2>&3 3>&-',
  '[ -z "$pf" ] || echo $pid > "$pf"',
  'while :; do wait $pid; st=$?; kill -0 $pid 2>/dev/null || break; done',
  // A command that succeeded ends in `rm` itself (its status is rm's 0): one fork fewer per run.
  'if [ -n "$pf" ]; then [ "$st" = 0 ] && exec rm -f "$pf"; rm -f "$pf"; fi',
  'exit $st',
].join('\n')

/**
 * Builds the runner-side command line: `exec bash -lc <group runner> bash <pid file> <argv…>`
 * so every argument arrives exactly as typed. `--shell`, a single argument with
 * shell syntax, or standalone control operators run the words as one bash
 * script (`bash -c <script>`) under the same runner.
 */
export function remoteCommandFor(argv: string[], options: { shell?: boolean; pidFile?: string; envFile?: string } = {}): RemoteCommand {
  const script = options.shell || (argv.length === 1 && shellSyntax.test(argv[0])) || argv.some((arg) => controlOperators.has(arg))
  // A hydrated lease (services/actions): the Actions job's environment is sourced first.
  const runner = options.envFile ? `ef=$1; shift; [ -f "$ef" ] && . "$ef"\n${groupRunner}` : groupRunner
  const first = options.envFile ? [options.envFile] : []
  const run = (words: string[]) =>
    `exec bash -lc ${shellQuote(runner)} bash ${[...first, options.pidFile ?? '', ...words].map(shellQuote).join(' ')}`
  if (script) {
    const text = argv.length === 1 ? argv[0] : argv.map((arg) => (controlOperators.has(arg) ? arg : shellQuote(arg))).join(' ')
    return { command: run(['bash', '-c', text]), viaShell: true }
  }
  return { command: run(argv), viaShell: false }
}

/** Where a run's group runner records its process group: one file per run. */
export const runPidFile = (leaseId: string) => `/tmp/crabbox-${leaseId}-${randomBytes(4).toString('hex')}.pid`

/**
 * `--no-sync`: nothing created the workdir yet, so the command's own exec makes it (one round
 * trip); a workdir that is there already (the usual warm case) costs no `mkdir` process.
 */
export function noSyncPrefix(workdir: string): string {
  const dir = shellQuote(workdir)
  return `{ cd ${dir} 2>/dev/null || { mkdir -p ${dir} && cd ${dir}; }; } && `
}

/**
 * Ctrl-C over a second channel, for servers that ignore SSH signal requests: INT to the group
 * the runner recorded now, KILL 3 s later, so a stuck command cannot hold the run open.
 */
export function interruptGroup(exec: (command: string) => Promise<unknown>, pidFile: string): void {
  void exec(signalGroupCommand(pidFile, 'INT')).catch(() => {})
  setTimeout(() => void exec(signalGroupCommand(pidFile, 'KILL')).catch(() => {}), 3000).unref()
}

/** Signals the process group a runner recorded in `pidFile` (no-op once it finished). */
export function signalGroupCommand(pidFile: string, signal: 'INT' | 'TERM' | 'KILL'): string {
  // No `--`: dash, a common login shell, rejects it.
  return `pf=${shellQuote(pidFile)}; [ -s "$pf" ] && kill -${signal} -"$(cat "$pf")" 2>/dev/null; true`
}

/** The local environment variables `env.allow` names: exact names or `PREFIX*`. */
export function forwardedEnv(allow: string[], env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) continue
    if (allow.some((pattern) => (pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern))) out[name] = value
  }
  return out
}
