/**
 * The POSIX sh that runs on the runner. The runner only promises sh, tar and
 * git (no python3), so each step is one small script sent in the same exec as
 * its data, which keeps a small change to two round trips.
 */

import { shellQuote as q } from '../../transport/ssh/exec.js'

/** POSIX single quotes (the transport's rule): safe for any byte string without NUL. */
export { q }

/** `sh -c <script> <name> args...`, quoted so any login shell passes it to sh untouched. */
export const shCommand = (script: string, name: string, args: string[] = []) =>
  `exec sh -c ${q(script)} ${[name, ...args].map(q).join(' ')}`

/** Files under the metadata dir (`.git/crabbox` in a git worktree, else `.crabbox`). */
export const META_FILES = {
  fingerprint: 'sync-fingerprint',
  fingerprintNext: 'sync-fingerprint.next',
  manifest: 'sync-manifest',
  delta: 'sync-manifest.delta',
  next: 'sync-manifest.next',
  bundle: 'seed.bundle',
  /** The shallow seed built on the runner from its files (seed-build.ts). */
  seedPack: 'seed.pack',
  seedInfo: 'seed.info',
  seedPaths: 'seed.paths',
  seedCheck: 'seed.check',
  seedIndex: 'seed.index',
  /** The cold seed's pack, indexed here before its objects move into `.git/objects` (seed-pack.ts). */
  seedObjects: 'seed-objects',
  apply: 'sync-apply.sh',
  /** The tar an apply carried inline (base64 in the script), decoded here before extraction. */
  inlineTar: 'sync-inline.tar',
} as const

/** Exit statuses our scripts use; anything else came from the shell or a tool. */
export const SCRIPT_EXIT = { workdir: 70, tar: 71, guard: 72, pack: 73 } as const

/**
 * One line the apply and commit scripts print: `mark <phase>` as each phase
 * starts (`mark done` at the end), `warn <message>`, and the git block's
 * `need-bundle` / `need-base` (see git-seed.ts). Other lines are ignored.
 */
export type ApplyLine =
  { mark: string | undefined } | { warn: string } | { need: 'need-bundle' | 'need-base' } | { stale: true } | undefined

export function readApplyLine(line: string): ApplyLine {
  if (line.startsWith('mark ')) return { mark: line.slice(5) === 'done' ? undefined : line.slice(5) }
  if (line === 'stale') return { stale: true }
  if (line.startsWith('warn ')) return { warn: line.slice(5) }
  if (line === 'need-bundle' || line === 'need-base') return { need: line }
  return undefined
}

/** Shell functions the apply script uses. */
const APPLY_PRELUDE = `set -u
mark() { echo "mark $1"; }
# Removes one path crabbox put there, never through a symlinked parent, then empty parents.
del() {
  d=$1
  while :; do case $d in */*) d=\${d%/*}; [ -L "$d" ] && return 0;; *) break;; esac; done
  rm -f -- "$1" 2>/dev/null
  d=$1
  while :; do case $d in */*) d=\${d%/*}; rmdir -- "$d" 2>/dev/null || return 0;; *) return 0;; esac; done
}
`

export interface ApplyScriptOptions {
  workdir: string
  meta: string
  /** The fingerprint to write last; `tar` when it arrives as `sync-fingerprint.next` in the tar; undefined: none. */
  fingerprint?: string
  /** Records appended before anything is written: the paths about to change, as unknown. */
  pending: string[]
  /** Paths to prune, before extraction so type changes (file → dir) extract cleanly. */
  remove: string[]
  /**
   * Whether stdin carries a tar stream, and whether it is gzip-compressed. `inline`: the tar
   * travels in the script instead (base64), and stdin is left alone for the command (`thenRun`).
   */
  tar?: { gzip: boolean; inline?: string }
  /** The tar carries a full manifest (`sync-manifest.next`) that replaces base + delta. */
  fullManifest: boolean
  /** Records appended after extraction (ignored when fullManifest). */
  records: string[]
  /** A git block (see git-seed.ts) run after the files landed; may print `need-bundle`. */
  git?: string
  /** Lines that write the files the seed pack carried (seed-pack.ts), before the record is committed. */
  checkout?: string
  /** Lines run before the transfer starts (the seed pack's object directory). */
  beforeTransfer?: string
  /** Stop after extraction: the record, git and fingerprint come later from commitScript, once every part landed. */
  deferCommit?: boolean
  /**
   * The sync was planned against what the runner is expected to hold, without
   * asking it first: apply only when it does (see expectLines), else print
   * `stale` and change nothing.
   */
  expect?: Expected
  /**
   * End with `<tag> ok` and the command instead of `exit 0`: the apply and the command in one
   * exec (steps/apply-and-run.ts). The script's args are then the tag and the command.
   */
  thenRun?: boolean
}

/** What a sync planned without the probe expects on the runner. */
export interface Expected {
  fingerprint: string
  /** The runner's git HEAD and `origin/<ref>` (undefined: not checked, git seeding is off). */
  git?: { head: string; baseRef?: string; baseSha?: string }
  /** The runner's appended record may not be longer than this (else compaction is due: the probe path decides it). */
  maxDelta: number
  /** When stale, the probe runs in the same exec (PROBE_SCRIPT with these args): its answer follows the `stale` line. */
  probe?: { script: string; args: string[] }
  /**
   * A file under the metadata dir to write `ok`, `stale` or `fail` to when the apply ends: the
   * command pipelined beside it (sync/guard.ts runAfterApply) waits for it.
   */
  marker?: string
}

/**
 * The guard of a sync planned without the probe; drains stdin so the tar stream ends cleanly when
 * stale (not with `thenRun`: stdin is the command's). An inline tar needs base64 on the runner.
 */
function expectLines(e: Expected, o: { drain: boolean; base64: boolean }): string[] {
  const lines = [
    // Whatever ends the script first (an error, stale, done) answers the pipelined command; `fail` by default.
    ...(e.marker ? [`m="$meta/${e.marker}"`, `trap '[ -s "$m" ] || echo fail > "$m"' EXIT`] : []),
    'stale=0',
    `[ "$(cat -- "$meta/${META_FILES.fingerprint}" 2>/dev/null)" = ${q(e.fingerprint)} ] || stale=1`,
    `d=$(wc -c 2>/dev/null < "$meta/${META_FILES.delta}" | tr -d ' '); [ "\${d:-0}" -le ${e.maxDelta} ] || stale=1`,
    ...(o.base64 ? ['command -v base64 > /dev/null 2>&1 || stale=1'] : []),
  ]
  if (e.git) {
    const rev = (ref: string) => `"$(GIT_DIR="$PWD/.git" git rev-parse -q --verify ${q(ref)} 2>/dev/null)"`
    lines.push(`[ $stale = 1 ] || [ ${rev('HEAD')} = ${q(e.git.head)} ] || stale=1`)
    if (e.git.baseRef && e.git.baseSha)
      lines.push(`[ $stale = 1 ] || [ ${rev(`refs/remotes/origin/${e.git.baseRef}^{commit}`)} = ${q(e.git.baseSha)} ] || stale=1`)
  }
  const answer = e.probe ? `; exec sh -c ${q(e.probe.script)} crabbox-probe ${e.probe.args.map(q).join(' ')}` : '; exit 0'
  const tell = e.marker ? 'echo stale > "$m"; ' : ''
  lines.push(`if [ $stale = 1 ]; then ${o.drain ? 'cat > /dev/null; ' : ''}${tell}echo stale${answer}; fi`)
  return lines
}

/** printf in batches: one builtin call per 500 records keeps the script fast without huge lines. */
function appendRecords(records: string[], file: string): string {
  const out: string[] = []
  for (let i = 0; i < records.length; i += 500) {
    out.push(
      `printf '%s\\0' ${records
        .slice(i, i + 500)
        .map((r) => q(r.endsWith('\0') ? r.slice(0, -1) : r))
        .join(' ')} >> "$meta/${file}" || exit 1`,
    )
  }
  return out.join('\n')
}

/** Round trip 2: pending marks, prune, extract, manifest commit, git, fingerprint — in that order. */
export function applyScript(o: ApplyScriptOptions): string {
  const lines = [
    ...scriptHead(o),
    ...(o.thenRun ? ['tag=$1 cmd=$2; shift 2'] : []),
    ...(o.expect ? expectLines(o.expect, { drain: !o.thenRun, base64: o.tar?.inline !== undefined }) : []),
    // From here until the end the runner's tree may differ from its record: no fingerprint.
    `rm -f -- "$meta/${META_FILES.fingerprint}" "$meta/${META_FILES.next}" "$meta/${META_FILES.fingerprintNext}"`,
    appendRecords(o.pending, META_FILES.delta),
    'mark prune',
    ...o.remove.map((path) => `del ${q(path)}`),
  ]
  if (o.tar) lines.push(o.beforeTransfer ?? '', 'mark transfer', extractLine(o.tar.gzip, o.tar.inline))
  if (o.deferCommit) lines.push('exit 0', '')
  else lines.push(...commitLines(o))
  return lines.filter((line) => line !== '').join('\n')
}

/** The commit half of a deferred apply: record, git, fingerprint, run after every transfer part landed. */
export function commitScript(o: ApplyScriptOptions): string {
  return [...scriptHead(o), ...commitLines(o)].filter((line) => line !== '').join('\n')
}

const scriptHead = (o: Pick<ApplyScriptOptions, 'workdir' | 'meta'>) => [
  APPLY_PRELUDE,
  `wd=${q(o.workdir)} meta=${q(o.meta)}`,
  `mkdir -p -- "$wd/$meta" 2>/dev/null && cd -- "$wd" || { echo "cannot create workdir $wd" >&2; exit ${SCRIPT_EXIT.workdir}; }`,
]

const extractLine = (gzip: boolean, inline?: string) =>
  inline === undefined
    ? `tar -x${gzip ? 'z' : ''}pf - --no-same-owner || { echo "tar failed to extract the sync stream" >&2; exit ${SCRIPT_EXIT.tar}; }`
    : inlineExtract(gzip, inline)

/** The tar carried in the script: base64 in a quoted here-doc (76-column lines), decoded to a file, extracted. */
function inlineExtract(gzip: boolean, base64: string): string {
  const tar = `"$meta/${META_FILES.inlineTar}"`
  const fail = (what: string) => `{ rm -f -- ${tar}; echo "${what}" >&2; exit ${SCRIPT_EXIT.tar}; }`
  return [
    `base64 -d > ${tar} <<'CRABBOX_TAR_END' || ${fail('base64 failed to decode the sync stream')}`,
    ...(base64.match(/.{1,76}/g) ?? []),
    'CRABBOX_TAR_END',
    `tar -x${gzip ? 'z' : ''}pf ${tar} --no-same-owner || ${fail('tar failed to extract the sync stream')}`,
    `rm -f -- ${tar}`,
  ].join('\n')
}

function commitLines(o: ApplyScriptOptions): string[] {
  const lines = o.checkout ? ['mark git_seed', o.checkout, 'mark finalize'] : ['mark finalize']
  if (o.fullManifest) {
    lines.push(`mv -f -- "$meta/${META_FILES.next}" "$meta/${META_FILES.manifest}" && rm -f -- "$meta/${META_FILES.delta}" || exit 1`)
  } else {
    lines.push(appendRecords(o.records, META_FILES.delta))
  }
  if (o.git) lines.push(o.git)
  // When git still needs a bundle, the bundle step writes the fingerprint after it.
  if (o.fingerprint === 'tar') {
    lines.push(`[ "\${needbundle:-0}" = 1 ] || mv -f -- "$meta/${META_FILES.fingerprintNext}" "$meta/${META_FILES.fingerprint}" || exit 1`)
  } else if (o.fingerprint) {
    lines.push(`[ "\${needbundle:-0}" = 1 ] || printf '%s\\n' ${q(o.fingerprint)} > "$meta/${META_FILES.fingerprint}" || exit 1`)
  }
  if (o.expect?.marker) lines.push('echo ok > "$m"')
  lines.push('mark done')
  // The command runs as the guard runs it (sync/guard.ts), without the apply's `set -u`.
  if (o.thenRun) lines.push('set +u', 'echo "$tag ok"', 'eval "$cmd"', '')
  else lines.push('exit 0', '')
  return lines
}

/**
 * One extra part of a large transfer, on its own channel (each SSH channel has
 * its own flow-control window). Started only once the apply script reported
 * `mark transfer`, so the prune is over. Args: workdir, z|-.
 */
export const PART_SCRIPT = `cd -- "$1" || { echo "cannot enter workdir $1" >&2; exit ${SCRIPT_EXIT.workdir}; }
if [ "$2" = z ]; then tar -xzpf - --no-same-owner; else tar -xpf - --no-same-owner; fi || { echo "tar failed to extract the sync stream" >&2; exit ${SCRIPT_EXIT.tar}; }`

/** Stores a large apply script on the runner first (its own round trip), so it is not limited by argv size. */
export const UPLOAD_SCRIPT = `mkdir -p -- "$1/$2" 2>/dev/null && cat > "$1/$2/${META_FILES.apply}" || { echo "cannot write to $1" >&2; exit ${SCRIPT_EXIT.workdir}; }`

/** Runs the uploaded apply script with this exec's stdin (the tar stream). */
export const RUN_UPLOADED_SCRIPT = `f="$1/$2/${META_FILES.apply}"; sh "$f"; rc=$?; rm -f -- "$f"; exit $rc`
