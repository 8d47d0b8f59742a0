/**
 * The probe: the first round trip of a sync, started while the local manifest
 * is still being built. The script that runs on the runner and the parser of
 * the lines it prints live together here, so the two change together.
 */

import type { Config } from '../../config/schema.js'
import type { GitContext } from './manifest.js'
import { META_FILES, SCRIPT_EXIT } from './remote-scripts.js'

/**
 * Args: workdir, meta, head|-, base|-, known fingerprints... Prints, one per line:
 * - `fp <fingerprint|->`: the fingerprint the runner holds;
 * - `git <head|-|nogit> <0|1: has our head> <base sha|->`: the runner's `.git`;
 * - `sizes <base> <delta>`: bytes of the runner's record (base and appended part);
 * - `manifest known` (the runner's fingerprint is one we kept a copy of) or
 *   `manifest` followed by the raw records to EOF.
 */
export const PROBE_SCRIPT = `wd=$1 meta=$2 head=$3 base=$4; shift 4
mkdir -p -- "$wd/$meta" 2>/dev/null && cd -- "$wd" || { echo "cannot create workdir $wd" >&2; exit ${SCRIPT_EXIT.workdir}; }
cur=$(cat -- "$meta/${META_FILES.fingerprint}" 2>/dev/null)
echo "fp \${cur:--}"
if [ "$head" = - ]; then echo "git - 0 -"
elif ! command -v git >/dev/null 2>&1; then echo "git nogit 0 -"
elif [ -f .git/HEAD ]; then
  export GIT_DIR="$PWD/.git" GIT_WORK_TREE="$PWD"
  rhead=$(git rev-parse -q --verify HEAD 2>/dev/null) || rhead=-
  has=0; git cat-file -e "$head^{commit}" 2>/dev/null && has=1
  rbase=-; if [ "$base" != - ]; then rbase=$(git rev-parse -q --verify "refs/remotes/origin/$base^{commit}" 2>/dev/null) || rbase=-; fi
  echo "git \${rhead:--} $has \${rbase:--}"
else echo "git - 0 -"; fi
size() { if [ -f "$1" ]; then wc -c < "$1" | tr -d ' '; else echo 0; fi; }
echo "sizes $(size "$meta/${META_FILES.manifest}") $(size "$meta/${META_FILES.delta}")"
for k in "$@"; do if [ -n "$cur" ] && [ "$k" = "$cur" ]; then echo "manifest known"; exit 0; fi; done
echo manifest
cat -- "$meta/${META_FILES.manifest}" "$meta/${META_FILES.delta}" 2>/dev/null
exit 0
`

/** Arguments of PROBE_SCRIPT. */
export const probeArgs = (workdir: string, git: GitContext | undefined, config: Config['sync'], known: string[]) => [
  workdir,
  git ? '.git/crabbox' : '.crabbox',
  (config.gitSeed && git?.head) || '-',
  git?.baseRef || '-',
  ...known,
]

/** What the probe learnt about the runner's `.git`. */
export interface RemoteGit {
  /** The runner has no git binary. */
  missing: boolean
  head?: string
  /** The runner already has our HEAD commit. */
  hasHead: boolean
  base?: string
}

/** The runner's answer to the probe. */
export interface Probe {
  fingerprint?: string
  git?: RemoteGit
  sizes: { base: number; delta: number }
  /** The runner's fingerprint is one whose record we kept: `records` is empty. */
  known: boolean
  /** The runner's raw record (base, then appended records). */
  records: Buffer
}

/** Parses a `git <head> <has> <base>` line. */
export function parseRemoteGit(line: string): RemoteGit {
  const [, head, has, base] = line.split(' ')
  return {
    missing: head === 'nogit',
    head: head && head !== '-' && head !== 'nogit' ? head : undefined,
    hasHead: has === '1',
    base: base && base !== '-' ? base : undefined,
  }
}

/** Parses PROBE_SCRIPT's output; everything after the `manifest` line is the record, byte for byte. */
export function parseProbe(stdout: Buffer): Probe {
  const probe: Probe = { sizes: { base: 0, delta: 0 }, known: false, records: Buffer.alloc(0) }
  let offset = 0
  while (offset < stdout.length) {
    const nl = stdout.indexOf(10, offset)
    const line = stdout.subarray(offset, nl === -1 ? stdout.length : nl).toString('utf8')
    offset = nl === -1 ? stdout.length : nl + 1
    const [word, ...rest] = line.split(' ')
    if (word === 'fp') probe.fingerprint = rest[0] === '-' ? undefined : rest[0]
    else if (word === 'git') probe.git = parseRemoteGit(line)
    else if (word === 'sizes') probe.sizes = { base: Number(rest[0]) || 0, delta: Number(rest[1]) || 0 }
    else if (word === 'manifest') {
      probe.known = rest[0] === 'known'
      probe.records = stdout.subarray(offset)
      break
    }
  }
  return probe
}
