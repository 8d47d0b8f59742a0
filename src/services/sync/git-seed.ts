import { spawn } from 'node:child_process'
import { createReadStream } from 'node:fs'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { SshSession } from '../../transport/ssh/types.js'
import type { GitInfo } from './manifest.js'
import type { RemoteGit } from './probe-protocol.js'
import { META_FILES, SCRIPT_EXIT, q, shCommand } from './remote-scripts.js'
import { SEED_PARTS } from './seed-build.js'

export interface GitWork {
  /** The runner's HEAD must move to ours. */
  seed: boolean
  /** The runner's base ref must move to our `origin/<base>`. */
  hydrate: boolean
  /**
   * Seed HEAD from the synced files (seed-build.ts) instead of fetching or
   * bundling its history: the runner has no HEAD yet, and the base is absent
   * or HEAD itself (a base elsewhere needs the history down to the merge base).
   */
  build: boolean
}

/** Whether the runner's git needs work, and which. Undefined when it is already right. */
export function gitWork(local: GitInfo | undefined, remote: RemoteGit | undefined): GitWork | undefined {
  if (!local?.head || !remote || remote.missing) return undefined
  const seed = !remote.hasHead || remote.head !== local.head
  const hydrate = Boolean(local.baseRef && local.baseSha && remote.base !== local.baseSha)
  const build = seed && !remote.head && !remote.hasHead && (!local.baseSha || local.baseSha === local.head)
  return seed || hydrate ? { seed, hydrate, build } : undefined
}

const GIT_ENV = `export GIT_DIR="$PWD/.git" GIT_WORK_TREE="$PWD" GIT_TERMINAL_PROMPT=0 GIT_SSH_COMMAND="ssh -o BatchMode=yes -o ConnectTimeout=10"`
const FETCH = 'git -c http.lowSpeedLimit=1000 -c http.lowSpeedTime=20 fetch -q --no-tags --filter=blob:none origin'

/** Moves the runner's HEAD (and branch) to ours; rebuilds its index from HEAD's tree unless the seed already wrote it. */
function setHead(local: GitInfo, readTree = true): string {
  const head = q(local.head!)
  const ref = local.branch
    ? `git update-ref ${q(`refs/heads/${local.branch}`)} ${head} && git symbolic-ref HEAD ${q(`refs/heads/${local.branch}`)}`
    : `git update-ref --no-deref HEAD ${head}`
  return `{ ${ref}${readTree ? ` && git read-tree ${head}` : ''}; } >/dev/null 2>&1 || echo "warn could not point the runner's git HEAD at ${local.head!.slice(0, 12)}"`
}

/**
 * The runner side of the shallow seed (seed-build.ts): unpack HEAD's commit
 * and the blobs that travelled, hash the synced files that are HEAD's blobs
 * into packs (bulk check-in: a pack, not one loose object per file, which
 * costs the file system more than the hashing; stored uncompressed, which
 * halves the runner's CPU for it and which `git gc` compacts later), write
 * the trees, and keep the result only when the tree is HEAD's. Sets `seeded`
 * to 1 (done), `bad` (fall back to the bundle) or leaves it 0 (no seed
 * arrived).
 *
 * The index the seed writes keeps each file's stat data, so the first
 * `git status` only stats the files instead of hashing them all again: on a
 * runner with fewer than SEED_PARTS cores one `update-index` adds every file
 * to the new index itself; with more, SEED_PARTS processes hash at once, the
 * first into the new index, the others into their own, whose entries
 * (without stat data) are then gathered into it. Each bulk check-in
 * allocates zlib's state per file: glibc's default trim threshold hands
 * that memory back to the kernel and faults it in again every time, which
 * cost this step about a quarter of its CPU (GLIBC_TUNABLES, ignored by
 * other C libraries, keeps it).
 */
const PARTS = Array.from({ length: SEED_PARTS }, (_, i) => i).join(' ')
const OTHER_PARTS = PARTS.split(' ').slice(1).join(' ')
const ADD = (index: string) =>
  `GLIBC_TUNABLES=glibc.malloc.trim_threshold=67108864:glibc.malloc.top_pad=16777216 GIT_INDEX_FILE="${index}" git -c core.bigFileThreshold=1 -c core.compression=0 -c core.autocrlf=false update-index -z --add --stdin`
const SEED_LINES = [
  'seeded=0',
  `if [ -f "$meta/${META_FILES.seedCheck}" ]; then`,
  '  seeded=bad; stree=; sshallow=; sok=0',
  `  { read -r stree; read -r sshallow; } < "$meta/${META_FILES.seedCheck}"`,
  `  six="$PWD/$meta/${META_FILES.seedIndex}"; rm -f -- "$six"*`,
  '  ncpu=$(getconf _NPROCESSORS_ONLN 2>/dev/null) || ncpu=1',
  `  if git index-pack --stdin < "$meta/${META_FILES.seedPack}" >/dev/null 2>&1 &&`,
  `    GIT_INDEX_FILE="$six" git update-index -z --index-info < "$meta/${META_FILES.seedInfo}" >/dev/null 2>&1; then`,
  '    sok=1',
  `    if [ "\${ncpu:-1}" -ge ${SEED_PARTS} ] 2>/dev/null; then`,
  `      ${ADD('$six')} < "$meta/${META_FILES.seedPaths}.0" >/dev/null 2>&1 &`,
  '      pids=$!',
  `      for p in ${OTHER_PARTS}; do`,
  `        ${ADD('$six.$p')} < "$meta/${META_FILES.seedPaths}.$p" >/dev/null 2>&1 &`,
  '        pids="$pids $!"',
  '      done',
  '      for pid in $pids; do wait "$pid" || sok=0; done',
  `      [ $sok = 1 ] && ( for p in ${OTHER_PARTS}; do GIT_INDEX_FILE="$six.$p" git ls-files -s -z || exit 1; done ) > "$six.all" &&`,
  '        GIT_INDEX_FILE="$six" git update-index -z --index-info < "$six.all" >/dev/null 2>&1 || sok=0',
  '    else',
  `      cat -- ${PARTS.split(' ')
    .map((p) => `"$meta/${META_FILES.seedPaths}.${p}"`)
    .join(' ')} | ${ADD('$six')} >/dev/null 2>&1 || sok=0`,
  '    fi',
  '  fi',
  '  if [ $sok = 1 ] && [ -n "$stree" ] && [ "$(GIT_INDEX_FILE="$six" git write-tree 2>/dev/null)" = "$stree" ]; then',
  '    { [ -z "$sshallow" ] || echo "$sshallow" >> .git/shallow; } && mv -f -- "$six" .git/index && seeded=1',
  '  fi',
  `  rm -f -- "$six"* "$meta/${META_FILES.seedPack}" "$meta/${META_FILES.seedInfo}" "$meta/${META_FILES.seedPaths}".* "$meta/${META_FILES.seedCheck}"`,
  'fi',
]

/**
 * The cold seed's pack (seed-pack.ts) on its own channel: `git index-pack`
 * takes it as it arrives, into an object directory under the metadata dir, so
 * HEAD's files can be written even when `.git/objects` takes nothing; the
 * objects move into the repository only in the git block. A large pack is
 * split over several channels, each into its own `index-pack`. Args:
 * workdir, meta, part number.
 */
export const SEED_PACK_SCRIPT = `cd -- "$1" || { echo "cannot enter workdir $1" >&2; exit ${SCRIPT_EXIT.workdir}; }
o="$PWD/$2/${META_FILES.seedObjects}"
GIT_DIR="$PWD/.git" GIT_OBJECT_DIRECTORY="$o" git index-pack --stdin >/dev/null 2>"$o/err.$3" ||
  { echo "the runner could not read the git pack of HEAD's files: $(tail -n 1 "$o/err.$3" 2>/dev/null)" >&2; cat >/dev/null; exit ${SCRIPT_EXIT.pack}; }
rm -f -- "$o/err.$3"`

/** In the apply exec before the transfer starts: a repository and an empty object directory for the packs. */
export const SEED_PACK_PREPARE = [
  `{ [ -f .git/HEAD ] || GIT_DIR="$PWD/.git" git init -q; } >/dev/null 2>&1`,
  `rm -rf -- "$meta/${META_FILES.seedObjects}" && mkdir -p -- "$meta/${META_FILES.seedObjects}/pack" || { echo "cannot write to $wd/$meta" >&2; exit ${SCRIPT_EXIT.workdir}; }`,
].join('\n')

/**
 * Writes the files the seed pack carried (their paths in `seed.paths`) from
 * HEAD's tree into a new index that keeps their stat data; runs before the
 * record is committed, so a failure leaves no record that claims the files
 * (it fails the sync as a failed tar extraction would). One checkout worker
 * per core (`checkout.workers=0`; git before 2.32 ignores it): with a busy
 * disk one writer left this step at 3–16 s for 20k files, several at 4.5–5.6 s.
 */
export const SEED_PACK_CHECKOUT = [
  `so="$PWD/$meta/${META_FILES.seedObjects}" six="$PWD/$meta/${META_FILES.seedIndex}"; rm -f -- "$six"*; stree=; sshallow=`,
  `{ read -r stree; read -r sshallow; } < "$meta/${META_FILES.seedCheck}" || stree=`,
  `if ! { [ -n "$stree" ] && export GIT_DIR="$PWD/.git" GIT_WORK_TREE="$PWD" && GIT_OBJECT_DIRECTORY="$so" GIT_INDEX_FILE="$six" git read-tree "$stree" &&`,
  `  GIT_OBJECT_DIRECTORY="$so" GIT_INDEX_FILE="$six" git -c checkout.workers=0 checkout-index -f -u -z --stdin < "$meta/${META_FILES.seedPaths}"; } >/dev/null 2>"$so.err"; then`,
  `  echo "could not write HEAD's files from the git pack: $(tail -n 1 "$so.err" 2>/dev/null)" >&2`,
  `  rm -rf -- "$so" "$so.err" "$six"* "$meta/${META_FILES.seedPaths}" "$meta/${META_FILES.seedCheck}"; exit ${SCRIPT_EXIT.tar}`,
  'fi',
  'rm -f -- "$so.err"',
].join('\n')

/** The git block's half of the pack seed: move the objects in, check the tree, then the shallow mark and the index. */
const PACK_SEED_LINES = [
  'seeded=0',
  `if [ -n "\${stree:-}" ] && [ -d "$so/pack" ]; then`,
  '  seeded=bad; sok=1',
  '  for f in "$so"/pack/*.pack "$so"/pack/*.rev "$so"/pack/*.idx; do',
  '    [ -e "$f" ] || continue; mv -f -- "$f" .git/objects/pack/ 2>/dev/null || { sok=0; break; }',
  '  done',
  '  if [ $sok = 1 ] && [ "$(GIT_INDEX_FILE="$six" git write-tree 2>/dev/null)" = "$stree" ]; then',
  '    { [ -z "$sshallow" ] || echo "$sshallow" >> .git/shallow; } && mv -f -- "$six" .git/index && seeded=1',
  '  fi',
  `  rm -rf -- "$so" "$six"* "$meta/${META_FILES.seedPaths}" "$meta/${META_FILES.seedCheck}"`,
  'fi',
]

/**
 * Origin URLs the runner can use: GitHub SSH remotes become HTTPS, since the
 * runner holds no SSH key for them.
 */
export function runnerOriginUrl(url: string | undefined): string | undefined {
  if (!url) return undefined
  const ssh = /^(?:ssh:\/\/)?git@github\.com[:/](.+?)(?:\.git)?$/.exec(url)
  return ssh ? `https://github.com/${ssh[1]}.git` : url
}

/**
 * The apply script's git part: make `.git` a repository, fetch HEAD and the
 * base branch from origin on the runner (blobless), point HEAD at ours.
 * Prints `need-bundle` when origin could not provide what was needed; every
 * failure is a `warn` line, never a failed sync.
 */
export function gitBlock(local: GitInfo, work: GitWork, seedPack = false): string {
  const head = q(local.head!)
  const origin = runnerOriginUrl(local.originUrl)
  const lines = [
    'mark git_seed',
    GIT_ENV,
    'gitok=1',
    `[ -f .git/HEAD ] || git init -q >/dev/null 2>&1 || { echo "warn git init failed on the runner"; gitok=0; }`,
    'if [ $gitok = 1 ]; then',
  ]
  if (origin) lines.push(`git remote set-url origin ${q(origin)} >/dev/null 2>&1 || git remote add origin ${q(origin)} >/dev/null 2>&1`)
  if (work.build) lines.push(...(seedPack ? PACK_SEED_LINES : SEED_LINES))
  else if (origin && work.seed) lines.push(`git cat-file -e ${head}^{commit} 2>/dev/null || ${FETCH} ${head} >/dev/null 2>&1 || true`)
  lines.push('mark hydrate')
  if (work.hydrate) {
    const sha = q(local.baseSha!)
    const ref = q(`refs/remotes/origin/${local.baseRef}`)
    if (origin)
      lines.push(
        `git cat-file -e ${sha}^{commit} 2>/dev/null || ${FETCH} ${q(`+refs/heads/${local.baseRef}:refs/remotes/origin/${local.baseRef}`)} >/dev/null 2>&1 || true`,
      )
    lines.push(`if git cat-file -e ${sha}^{commit} 2>/dev/null; then git update-ref ${ref} ${sha}; else echo need-base; fi`)
  }
  if (work.build) {
    lines.push(
      `if [ "$seeded" = 1 ]; then ${setHead(local, false)}`,
      `elif [ "$seeded" = 0 ] && git cat-file -e ${head}^{commit} 2>/dev/null; then ${setHead(local)}`,
      'else echo need-bundle; needbundle=1; fi',
    )
  } else lines.push(`if git cat-file -e ${head}^{commit} 2>/dev/null; then ${setHead(local)}; else echo need-bundle; needbundle=1; fi`)
  lines.push('fi')
  return lines.join('\n')
}

/**
 * Runner could not fetch from origin: send the history it lacks as a git
 * bundle over the same SSH connection, then point HEAD at ours and write the
 * fingerprint. Failures come back as warnings.
 */
export async function sendBundle(
  session: SshSession,
  o: {
    repoRoot: string
    workdir: string
    meta: string
    fingerprint: string
    local: GitInfo
    remote: RemoteGit
    needHead: boolean
    needBase: boolean
    signal?: AbortSignal
    /** Bytes of the bundle read for sending so far, and its size (progress). */
    onBytes?: (sent: number, total: number) => void
  },
): Promise<string[]> {
  const warnings: string[] = []
  const refs: string[] = []
  if (o.needHead) refs.push('HEAD')
  if (o.needBase && o.local.baseRef) refs.push(`refs/remotes/origin/${o.local.baseRef}`)
  // Leave out what the runner already has, when we have it too.
  // After the apply step's hydrate the runner holds the base commit unless it asked for it.
  const base = o.needBase ? o.remote.base : o.local.baseSha
  for (const have of [o.remote.hasHead ? o.local.head : undefined, o.remote.head, base]) {
    if (have && have !== o.local.head && (await localHas(o.repoRoot, have))) refs.push(`^${have}`)
  }
  const script = [
    'set -u',
    `wd=$1 meta=$2`,
    'cd -- "$wd" || exit 70',
    GIT_ENV,
    `[ -f .git/HEAD ] || git init -q >/dev/null 2>&1`,
    `cat > "$meta/${META_FILES.bundle}"`,
    `git bundle unbundle "$meta/${META_FILES.bundle}" >/dev/null 2>"$meta/seed.err" || echo "warn the runner could not read the git bundle: $(tail -n 1 "$meta/seed.err")"`,
    `rm -f -- "$meta/${META_FILES.bundle}" "$meta/seed.err"`,
    o.needBase && o.local.baseSha
      ? `if git cat-file -e ${q(o.local.baseSha)}^{commit} 2>/dev/null; then git update-ref ${q(`refs/remotes/origin/${o.local.baseRef}`)} ${q(o.local.baseSha)}; fi`
      : '',
    // The fingerprint only once HEAD is right: without it the next sync looks again instead of skipping a broken checkout.
    `if git cat-file -e ${q(o.local.head!)}^{commit} 2>/dev/null; then ${setHead(o.local)}`,
    `  printf '%s\\n' ${q(o.fingerprint)} > "$meta/${META_FILES.fingerprint}"`,
    `else echo "warn the runner still lacks commit ${o.local.head!.slice(0, 12)}: its git checkout is not usable until the next sync"; fi`,
  ]
    .filter(Boolean)
    .join('\n')

  if (refs.every((ref) => ref.startsWith('^'))) return warnings
  // Bundle to a temp file first: a failed bundle is then known before anything is sent.
  const dir = await mkdtemp(join(tmpdir(), 'crabbox-bundle-'))
  const file = join(dir, 'seed.bundle')
  try {
    const created = await runGit(o.repoRoot, ['bundle', 'create', '-q', file, ...refs])
    if (created.code !== 0) {
      warnings.push(`git bundle failed locally: ${created.stderr.trim() || `exit ${created.code}`}`)
      return warnings
    }
    let out = ''
    const total = (await stat(file)).size
    let sent = 0
    const stdin = createReadStream(file).on('data', (chunk) => o.onBytes?.((sent += chunk.length), total))
    const result = await session.exec(shCommand(script, 'crabbox-git-bundle', [o.workdir, o.meta]), {
      stdin,
      onStdout: (chunk) => (out += chunk.toString('utf8')),
      signal: o.signal,
    })
    if (result.code !== 0) warnings.push(`git seed over SSH failed (exit ${result.code ?? result.signal})`)
    for (const line of out.split('\n')) if (line.startsWith('warn ')) warnings.push(line.slice(5))
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
  return warnings
}

function runGit(repoRoot: string, args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn('git', ['-C', repoRoot, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  return new Promise((resolve) => {
    child.on('error', (error) => resolve({ code: -1, stderr: error.message }))
    child.on('close', (code) => resolve({ code, stderr }))
  })
}

async function localHas(repoRoot: string, sha: string): Promise<boolean> {
  return (await runGit(repoRoot, ['cat-file', '-e', `${sha}^{commit}`])).code === 0
}
