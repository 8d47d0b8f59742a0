import { shellQuote } from '../../transport/ssh/exec.js'

/**
 * The runner-side half of Actions hydration, as shell. Everything lives under the lease
 * user's home:
 *
 * - `~/.crabbox/actions-runner/`: the official `actions/runner` (installed once, reused);
 * - `~/.crabbox/actions/runner.pid`, `runner.log`: the runner process crabbox started;
 * - `~/.crabbox/actions/<lease>.env`: the hydration marker the job writes when its setup
 *   steps are done (`WORKSPACE`, `RUN_ID`, `READY_AT`, `JOB`, `ENV_FILE`, `SERVICES_FILE`);
 * - `<lease>.env.sh`: the job's environment as `export` lines; `<lease>.services`: the
 *   job's service containers (JSON);
 * - `<lease>.stop`: written by `crabbox stop`; the job ends when it appears.
 */

export const STATE_DIR = '$HOME/.crabbox/actions'
export const RUNNER_DIR = '$HOME/.crabbox/actions-runner'

/** Exit codes of the configure script the CLI tells apart. */
export const NOT_INSTALLED = 64
export const CONFIG_FAILED = 65

const marker = (leaseId: string, suffix: string) => `"${STATE_DIR}/"${shellQuote(`${leaseId}${suffix}`)}`

/**
 * Configures the runner (`config.sh --unattended`) and starts it (`run.sh`, detached).
 * `$1` URL, `$2` name, `$3` labels (comma-separated), `$4` `true` for an ephemeral runner;
 * the registration token arrives on stdin, so it is never in a command line.
 * A runner crabbox started earlier on this lease is stopped first.
 */
export const configureScript = `set -eu
dir="${RUNNER_DIR}"; state="${STATE_DIR}"
mkdir -p "$state"
[ -x "$dir/config.sh" ] || exit ${NOT_INSTALLED}
IFS= read -r token
if [ -s "$state/runner.pid" ]; then kill "$(cat "$state/runner.pid")" 2>/dev/null || true; rm -f "$state/runner.pid"; fi
eph=; [ "$4" = true ] && eph=--ephemeral
cd "$dir"
# A configuration left from an earlier registration (a runner stopped before its job): forget it
# here; GitHub's side is replaced (--replace) or was deleted by crabbox.
rm -f .runner .credentials .credentials_rsaparams
if ! ./config.sh --unattended --replace --url "$1" --token "$token" --name "$2" --labels "$3" --work _work $eph >"$state/runner-config.log" 2>&1; then
  tail -n 20 "$state/runner-config.log" >&2; exit ${CONFIG_FAILED}
fi
setsid nohup ./run.sh >"$state/runner.log" 2>&1 </dev/null &
echo $! >"$state/runner.pid"
echo "runner-pid $!"`

/** Downloads and unpacks `actions/runner` version `$1` from server `$2` (then its OS dependencies, when sudo allows). */
export const installScript = `set -eu
dir="${RUNNER_DIR}"
case "$(uname -m)" in x86_64|amd64) arch=x64 ;; aarch64|arm64) arch=arm64 ;; *) echo "no actions/runner build for $(uname -m)" >&2; exit 66 ;; esac
mkdir -p "$dir"
curl -fsSL "$2/actions/runner/releases/download/v$1/actions-runner-linux-$arch-$1.tar.gz" | tar -xz -C "$dir"
if sudo -n true 2>/dev/null && [ -x "$dir/bin/installdependencies.sh" ]; then sudo -n "$dir/bin/installdependencies.sh" >/dev/null 2>&1 || true; fi`

/** Stops the runner process crabbox started (the job, if any, ends with it). */
export const stopRunnerScript = `pf="${STATE_DIR}/runner.pid"
if [ -s "$pf" ]; then pid=$(cat "$pf"); kill -TERM -"$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null; rm -f "$pf"; fi; true`

/** Removes the markers of an earlier hydration of this lease. */
export const clearMarkersScript = (leaseId: string) =>
  `rm -f ${['.env', '.env.sh', '.services', '.stop'].map((suffix) => marker(leaseId, suffix)).join(' ')}`

/** Prints the hydration marker (empty until the job has written it). */
export const readMarkerScript = (leaseId: string) => `cat ${marker(leaseId, '.env')} 2>/dev/null; true`

/** Writes the stop marker: the hydration job sees it and ends. */
export const stopMarkerScript = (leaseId: string) => `mkdir -p "${STATE_DIR}" && touch ${marker(leaseId, '.stop')}`

export interface HydrationMarker {
  workspace: string
  runId?: string
  readyAt?: string
  job?: string
  envFile?: string
  servicesFile?: string
}

/** Parses `<lease>.env` (`KEY=value` lines); undefined until it names a workspace. */
export function parseMarker(text: string): HydrationMarker | undefined {
  const values = new Map<string, string>()
  for (const line of text.split('\n')) {
    const at = line.indexOf('=')
    if (at > 0) values.set(line.slice(0, at).trim(), line.slice(at + 1).trim())
  }
  const workspace = values.get('WORKSPACE')
  if (!workspace) return undefined
  const optional = (key: string) => values.get(key) || undefined
  return {
    workspace,
    runId: optional('RUN_ID'),
    readyAt: optional('READY_AT'),
    job: optional('JOB'),
    envFile: optional('ENV_FILE'),
    servicesFile: optional('SERVICES_FILE'),
  }
}

/**
 * The job side: the last step of the hydration workflow (`init --workflow` writes it).
 * It runs on the lease's runner after the job's setup steps, with `CRABBOX_ID`,
 * `CRABBOX_KEEP_ALIVE_MINUTES`, `CRABBOX_JOB` and `CRABBOX_SERVICES` (the job's
 * `job.services`, JSON) in its environment. It saves the job's environment (without the
 * runner's own tokens), writes the marker last, then keeps the job alive until the stop
 * marker appears or the keep-alive time is up.
 */
export const jobSideScript = `set -eu
case "\${CRABBOX_ID:-}" in ''|*[!A-Za-z0-9_.-]*) echo "crabbox: bad crabbox_id" >&2; exit 1 ;; esac
dir="${STATE_DIR}"; mkdir -p "$dir"; chmod 700 "$dir"
base="$dir/$CRABBOX_ID"
(
  for name in $(compgen -e); do
    case "$name" in ACTIONS_*|*TOKEN*|*SECRET*|CRABBOX_SERVICES|HOME|PWD|OLDPWD|SHLVL|_) unset "$name" ;; esac
  done
  export -p
) >"$base.env.sh"
svc=\${CRABBOX_SERVICES:-}; [ -n "$svc" ] || svc='{}'
printf '%s\\n' "$svc" >"$base.services"
{
  echo "WORKSPACE=$GITHUB_WORKSPACE"
  echo "RUN_ID=$GITHUB_RUN_ID"
  echo "READY_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "JOB=\${CRABBOX_JOB:-$GITHUB_JOB}"
  echo "ENV_FILE=$base.env.sh"
  echo "SERVICES_FILE=$base.services"
} >"$base.env.tmp"
mv "$base.env.tmp" "$base.env"
echo "crabbox: lease $CRABBOX_ID hydrated; keeping the job alive"
end=$(( $(date +%s) + \${CRABBOX_KEEP_ALIVE_MINUTES:-90} * 60 ))
while [ ! -e "$base.stop" ] && [ "$(date +%s)" -lt "$end" ]; do sleep 2; done
echo "crabbox: job for lease $CRABBOX_ID ends"`
