import type { SshHost } from './ssh-host.js'

/**
 * A stand-in for GitHub's `actions/runner`, installed where crabbox looks for the runner
 * (`~/.crabbox/actions-runner/`) so crabbox reuses it instead of downloading one:
 *
 * - `config.sh` takes the real flags (`--url --token --name --labels --ephemeral …`) and
 *   registers with the fake (test/support/fake-github-actions.ts) using the registration token;
 * - `run.sh` polls the fake for a job, performs it, reports it done and (ephemeral) exits.
 *
 * Performing a job = the hydration workflow's steps: a stand-in setup step (an env var, a
 * PATH entry, a file in the workspace, runner tokens in the environment as GitHub sets
 * them), then `jobSide`: the script of the workflow's last step, as `init --workflow` writes it.
 */
export async function installStandinRunner(host: SshHost, fakeUrl: string, jobSide: string): Promise<void> {
  const config = `#!/bin/bash
set -eu
name=; labels=; token=; eph=false
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name=$2; shift ;; --labels) labels=$2; shift ;; --token) token=$2; shift ;; --url|--work) shift ;;
    --ephemeral) eph=true ;; --unattended|--replace) ;; *) echo "unknown option $1" >&2; exit 2 ;;
  esac; shift
done
cd "$(dirname "$0")"
body=$(jq -nc --arg n "$name" --arg l "$labels" --argjson e "$eph" '{name:$n, labels:($l|split(",")), ephemeral:$e}')
curl -fsS -X POST -H "authorization: RemoteAuth $token" -H 'content-type: application/json' --data "$body" ${fakeUrl}/_standin/register >.runner
echo "$eph" >.ephemeral
echo "Runner successfully added"
`
  const run = `#!/bin/bash
set -u
cd "$(dirname "$0")"
id=$(cat .runner)
while :; do
  code=$(curl -s -o job.txt -w '%{http_code}' ${fakeUrl}/_standin/runners/$id/job) || { sleep 1; continue; }
  [ "$code" = 410 ] && exit 0
  [ "$code" = 200 ] || { sleep 0.5; continue; }
  input() { sed -n "s/^INPUT_$1=//p" job.txt; }
  run_id=$(sed -n 's/^RUN_ID=//p' job.txt)
  (
    export GITHUB_RUN_ID=$run_id GITHUB_JOB=hydrate GITHUB_WORKSPACE="$PWD/_work/app/app"
    export ACTIONS_RUNTIME_TOKEN=runtime-secret-standin GITHUB_TOKEN=ghs_job_token_standin
    export CRABBOX_ID=$(input crabbox_id) CRABBOX_KEEP_ALIVE_MINUTES=$(input crabbox_keep_alive_minutes) CRABBOX_JOB=$(input crabbox_job)
    mkdir -p "$GITHUB_WORKSPACE/.tools" && cd "$GITHUB_WORKSPACE"
    # the workflow's setup steps (stand-in): what a later command must see
    printf '#!/bin/sh\\necho tool-from-setup\\n' >.tools/setup-tool && chmod +x .tools/setup-tool
    export HYDRATED_BY=crabbox-standin PATH="$GITHUB_WORKSPACE/.tools:$PATH"
    CRABBOX_SERVICES='{"redis":{"id":"c0ffee","ports":{"6379":"6379"},"network":"github_network"}}' bash ../../../job-side.sh
  ) >>job.log 2>&1
  curl -s -X POST ${fakeUrl}/_standin/runs/$run_id/complete >/dev/null
  [ "$(cat .ephemeral)" = true ] && exit 0
done
`
  const dir = `${host.home}/.crabbox/actions-runner`
  const write = (name: string, text: string) =>
    host.run(`mkdir -p ${dir} && cat > ${dir}/${name} <<'STANDIN_EOF'\n${text}\nSTANDIN_EOF\nchmod 755 ${dir}/${name}`)
  for (const [name, text] of [
    ['config.sh', config],
    ['run.sh', run],
    ['job-side.sh', jobSide],
  ] as const) {
    const result = await write(name, text)
    if (result.code !== 0) throw new Error(`installing the stand-in runner: ${result.stderr}`)
  }
  const owned = await host.run(`chown -R ${host.user}: ${host.home}/.crabbox`)
  if (owned.code !== 0) throw new Error(`chown: ${owned.stderr}`)
}
