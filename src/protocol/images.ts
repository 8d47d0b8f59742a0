import * as v from 'valibot'

/**
 * Machine image wire shapes (AWS AMIs baked from a lease's machine): `POST /v1/images`,
 * `GET /v1/images/{ami}`, `POST /v1/images/{ami}/promote`. A promoted image is the AMI
 * new brokered AWS leases start from unless a lease names its own (`awsAMI`).
 */

export const IMAGE_NAME_PATTERN = /^[A-Za-z0-9()[\]./_ -]{3,128}$/
export const IMAGE_NAME_FORM = '3 to 128 characters: letters, digits, spaces and ( ) [ ] . / _ -'
export const AMI_ID_PATTERN = /^ami-[0-9a-f]{8,17}$/
export const AMI_ID_FORM = 'an AMI ID like ami-0123456789abcdef0'

export const ImageName = v.pipe(v.string('an image name'), v.regex(IMAGE_NAME_PATTERN, IMAGE_NAME_FORM))
export const AmiId = v.pipe(v.string('an AMI ID'), v.regex(AMI_ID_PATTERN, AMI_ID_FORM))

/** `POST /v1/images`: the lease (ID or slug; `id` is accepted as an alias of `leaseID`) and the image name. */
export const ImageCreateRequest = v.object({
  leaseID: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(128, 'a lease ID or slug'))),
  id: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(128, 'a lease ID or slug'))),
  name: ImageName,
  /** Image the disk without stopping the machine first (default true: the lease keeps running). */
  noReboot: v.optional(v.boolean()),
})
export type ImageCreateRequest = v.InferOutput<typeof ImageCreateRequest>

/** EC2's image states; `available` is the only one a lease can start from. */
export const ImageState = v.string()

export const ImageRecord = v.looseObject({
  id: v.string(),
  name: v.string(),
  state: ImageState,
  region: v.string(),
  /** The lease whose machine was imaged, when the broker made the image. */
  leaseID: v.optional(v.string()),
  createdAt: v.optional(v.string()),
  /** Set on the image new brokered AWS leases start from. */
  promotedAt: v.optional(v.string()),
})
export type ImageRecord = v.InferOutput<typeof ImageRecord>

export const ImageResponse = v.object({ image: ImageRecord })
export type ImageResponse = v.InferOutput<typeof ImageResponse>
