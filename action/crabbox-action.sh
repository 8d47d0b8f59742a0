#!/usr/bin/env bash
# The steps of the crabbox GitHub Action (action.yml): install | lease | run | release.
# Each runs as the runner runs a composite step: bash, the job's checkout as the working
# directory, GITHUB_* variables set, the step's inputs as INPUT_* variables.
set -euo pipefail

# The broker (inputs broker-url, broker-token) as crabbox's own settings; the token is masked in the log.
if [ -n "${CRABBOX_ACTION_BROKER_URL:-}" ]; then export CRABBOX_COORDINATOR="$CRABBOX_ACTION_BROKER_URL"; fi
if [ -n "${CRABBOX_ACTION_BROKER_TOKEN:-}" ]; then
  echo "::add-mask::$CRABBOX_ACTION_BROKER_TOKEN"
  export CRABBOX_COORDINATOR_TOKEN="$CRABBOX_ACTION_BROKER_TOKEN"
fi
unset CRABBOX_ACTION_BROKER_TOKEN
# Who the broker records as the owner (a shared token claims it): the job's actor unless set.
if [ -z "${CRABBOX_OWNER:-}" ] && [ -n "${GITHUB_ACTOR:-}" ]; then export CRABBOX_OWNER="$GITHUB_ACTOR@users.noreply.github.com"; fi

fail() { # fail <exit code> <message>
  echo "::error title=crabbox::$2"
  exit "$1"
}

install() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
    fail 3 "node and npm are not installed: add actions/setup-node (node-version: 22) before this Action"
  node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit((a === 20 && b >= 19) || (a === 22 && b >= 12) || a > 22 ? 0 : 1)' ||
    fail 3 "crabbox needs Node 20.19+ or 22.12+, this job has $(node --version): set node-version in actions/setup-node"
  # The package version that matches this copy of the Action, unless CRABBOX_ACTION_PACKAGE names another (a tarball, a version).
  local spec="${CRABBOX_ACTION_PACKAGE:-crabbox@$(node -p 'require(process.argv[1]).version' "$GITHUB_ACTION_PATH/package.json")}"
  echo "::group::install $spec"
  npm install --global --no-audit --no-fund "$spec" || fail 3 "npm install --global $spec failed (see the lines above): check the npm registry can be reached"
  local bin
  bin="$(npm prefix --global)/bin"
  [ -x "$bin/crabbox" ] || fail 3 "npm installed $spec but $bin/crabbox is missing"
  echo "$bin" >>"$GITHUB_PATH"
  "$bin/crabbox" --version
  echo "::endgroup::"
}

lease() {
  if [ -n "${INPUT_ID:-}" ]; then
    echo "using lease $INPUT_ID (the Action does not release it)"
    echo "lease-id=$INPUT_ID" >>"$GITHUB_OUTPUT"
    return
  fi
  local args=(warmup --json)
  if [ -n "${INPUT_PROVIDER:-}" ]; then args+=(--provider "$INPUT_PROVIDER"); fi
  if [ -n "${INPUT_CLASS:-}" ]; then args+=(--class "$INPUT_CLASS"); fi
  echo "::group::lease a box"
  local out id
  out=$(crabbox "${args[@]}")
  id=$(node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0, "utf8")).id)' <<<"$out")
  echo "::endgroup::"
  echo "leased $id"
  { echo "lease-id=$id"; echo "lease-made=true"; } >>"$GITHUB_OUTPUT"
}

run() {
  [ -n "${LEASE_ID:-}" ] || fail 1 "no lease to run on (the lease step failed)"
  local args=(run --id "$LEASE_ID" --shell)
  if [ -n "${INPUT_JUNIT:-}" ]; then args+=(--junit "$INPUT_JUNIT"); fi
  if [ "${INPUT_TIMING_JSON:-false}" = "true" ]; then args+=(--timing-json); fi
  local code=0
  crabbox "${args[@]}" -- "$INPUT_COMMAND" || code=$?
  echo "exit-code=$code" >>"$GITHUB_OUTPUT"
  exit "$code"
}

release() {
  if [ "${LEASE_MADE:-}" != "true" ] || [ -z "${LEASE_ID:-}" ]; then return; fi
  if [ "${INPUT_KEEP:-false}" = "true" ]; then
    echo "keeping lease $LEASE_ID (keep: true): stop it with crabbox stop $LEASE_ID"
    return
  fi
  echo "::group::release $LEASE_ID"
  crabbox stop "$LEASE_ID"
  echo "::endgroup::"
}

case "${1:-}" in
  install | lease | run | release) "$1" ;;
  *) fail 2 "usage: crabbox-action.sh install|lease|run|release" ;;
esac
