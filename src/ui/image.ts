import type { ImageRecord } from '../protocol/images.js'

/** One `key=value` line for an image, as scripts parse it. */
export function renderImage(image: ImageRecord, verb?: string): string {
  const fields = [
    `image=${image.id}`,
    `name=${JSON.stringify(image.name)}`,
    `state=${image.state}`,
    `region=${image.region}`,
    ...(image.leaseID ? [`lease=${image.leaseID}`] : []),
    ...(image.promotedAt ? [`promotedAt=${image.promotedAt}`] : []),
  ]
  return `${verb ? `${verb} ` : ''}${fields.join(' ')}\n`
}
