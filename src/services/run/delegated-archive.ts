import type { Config } from '../../config/schema.js'
import type { Progress } from '../../ui/progress.js'
import { buildManifest } from '../sync/manifest.js'
import { tarStream } from '../sync/transfer.js'

/**
 * The checkout's sync manifest (the same files, excludes and safety rules as SSH sync) as one
 * gzipped tar, for delegated providers that unpack an archive themselves (`sync: 'archive'`).
 */
export async function manifestArchive(repoRoot: string, config: Config['sync'], progress: Progress): Promise<Buffer> {
  const manifest = await buildManifest(repoRoot, config)
  if (manifest.rejected.length > 0) {
    const [first] = manifest.rejected
    progress.warn(`not syncing ${manifest.rejected.length} unsafe path(s), e.g. ${first.path}: ${first.reason}`)
  }
  const { stream, done } = tarStream({ root: repoRoot, entries: manifest.entries, extra: () => [], extraPaths: [] }, { gzip: true })
  const chunks: Buffer[] = []
  const collected = (async () => {
    for await (const chunk of stream) chunks.push(chunk as Buffer)
  })()
  await Promise.all([done, collected])
  progress.info(`archive: ${manifest.files} files, ${manifest.bytes} bytes`)
  return Buffer.concat(chunks)
}
