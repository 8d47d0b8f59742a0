import { ARTIFACT_UPLOAD_UNAVAILABLE, ArtifactUploadRequest, ArtifactUploadResponse } from '../../src/protocol/artifacts.js'
import { ApiError } from '../../src/protocol/errors.js'
import { publicOrigin } from '../portal/session.js'
import { uploadGrants } from './artifacts.js'
import { defineRoute, type RouteSpec } from './route-spec.js'

export const ARTIFACT_ROUTES: readonly RouteSpec[] = [
  defineRoute(
    {
      method: 'POST',
      path: '/v1/artifacts/uploads',
      summary: "Signed, short-lived upload links (and read links) for files in the broker's artifact bucket",
      auth: 'user',
      body: ArtifactUploadRequest,
      response: ArtifactUploadResponse,
    },
    async (c, deps, input) => {
      let request: ArtifactUploadRequest
      try {
        request = await input.body()
      } catch (error) {
        // Every refused grant has one code; a body over the size limit keeps its 413.
        if (error instanceof ApiError && error.status === 400) throw new ApiError(400, ARTIFACT_UPLOAD_UNAVAILABLE, error.message)
        throw error
      }
      const grants = await uploadGrants(deps.storage, deps.env, c.get('identity'), request, publicOrigin(deps.env, c.req.raw), deps.now())
      return c.json(grants, 201)
    },
  ),
]
