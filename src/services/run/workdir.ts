import { basename } from 'node:path'

/** `<workRoot>/<leaseID>/<repoName>`: one workdir per lease and checkout. */
export const workdirFor = (workRoot: string, leaseId: string, repoRoot: string) =>
  `${workRoot.replace(/\/+$/, '')}/${leaseId}/${basename(repoRoot)}`
