import { COMMENT_MARKER } from './publish-comment.js'
import type { PublishedFile } from './publish-storage.js'

/** Report kinds --template takes; both use the layout below, under their own heading. */
export const PUBLISH_TEMPLATES = ['openclaw', 'mantis'] as const
export type PublishTemplate = (typeof PUBLISH_TEMPLATES)[number]

const HEADINGS: Record<PublishTemplate, string> = {
  openclaw: 'OpenClaw QA artifacts',
  mantis: 'Mantis QA artifacts',
}

/** GitHub refuses comment bodies over 65536 characters; the file table stops well before. */
const MAX_LISTED = 200

const IMAGE = /\.(png|jpe?g|gif|webp)$/i
const VIDEO = /\.(mp4|webm)$/i

function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`
}

/** Markdown-safe link text: brackets, pipes and backticks would end the link or the table cell. */
const text = (name: string) => name.replace(/([\\[\]|`*_<>])/g, '\\$1')

/**
 * The report `published-artifacts.md` holds and the pull-request comment shows: the marker,
 * a heading, the summary, images inline, videos and every file as links.
 */
export function renderPublished(template: PublishTemplate, files: readonly PublishedFile[], summary?: string): string {
  const lines = [COMMENT_MARKER, `## ${HEADINGS[template]}`, '']
  if (summary?.trim()) lines.push(summary.trim(), '')
  const images = files.filter((f) => IMAGE.test(f.name))
  const videos = files.filter((f) => VIDEO.test(f.name))
  if (images.length > 0) {
    lines.push('### Screenshots', '')
    for (const image of images.slice(0, 20)) lines.push(`**${text(image.name)}**`, '', `![${text(image.name)}](${image.url})`, '')
  }
  if (videos.length > 0) {
    lines.push('### Videos', '')
    for (const video of videos.slice(0, 20)) lines.push(`- [${text(video.name)}](${video.url}) (${size(video.size)})`)
    lines.push('')
  }
  lines.push('### Files', '', '| File | Size |', '| --- | ---: |')
  for (const file of files.slice(0, MAX_LISTED)) lines.push(`| [${text(file.name)}](${file.url}) | ${size(file.size)} |`)
  if (files.length > MAX_LISTED) lines.push('', `…and ${files.length - MAX_LISTED} more files under the same prefix.`)
  lines.push(
    '',
    `<sub>Published by crabbox artifacts publish: ${files.length} files, ${size(files.reduce((n, f) => n + f.size, 0))}.</sub>`,
    '',
  )
  return lines.join('\n')
}
