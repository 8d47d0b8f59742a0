import { parse as parseYaml } from 'yaml'
import type { ServiceContext } from '../context.js'
import { CrabboxError, usageError } from '../../errors.js'
import { leaseHeartbeat } from '../heartbeat.js'
import { interruptOnSignals, unlessInterrupted } from '../run/lifecycle.js'
import { GithubApi, githubServerUrl, githubToken, repoSlug, resolveRepo, type GithubRepo } from './github.js'
import { leaseShell, mustSucceed, type LeaseShell } from './lease-shell.js'
import { writeHydration, type HydrationRecord } from './record.js'
import {
  CONFIG_FAILED,
  NOT_INSTALLED,
  clearMarkersScript,
  configureScript,
  installScript,
  parseMarker,
  readMarkerScript,
  stopRunnerScript,
  type HydrationMarker,
} from './scripts.js'

/**
 * `actions register`, `actions dispatch`, `actions hydrate` (and `warmup --actions-runner`):
 * an ephemeral self-hosted runner on the lease, the repository's hydration workflow
 * dispatched to it with `crabbox_*` inputs, and the wait for the job's marker.
 */

export interface RegisterFlags {
  id?: string
  reclaim?: boolean
  repo?: string
  name?: string
  labels?: string[]
  version?: string
  ephemeral?: boolean
}

export interface RegisterResult {
  leaseId: string
  repo: string
  runnerName: string
  labels: string[]
  ephemeral: boolean
}

export interface DispatchFlags {
  repo?: string
  workflow?: string
  ref?: string
  fields?: string[]
}

export interface DispatchResult {
  repo: string
  workflow: string
  ref: string
  inputs: Record<string, string>
  runId?: number
  runUrl?: string
}

/** The inputs the hydration workflow must declare (`init --workflow` writes them). */
export const REQUIRED_INPUTS = ['crabbox_id', 'crabbox_runner_label', 'crabbox_keep_alive_minutes'] as const

interface Github {
  api: GithubApi
  repo: GithubRepo
}

async function github(context: ServiceContext, repo: string | undefined): Promise<Github> {
  const resolved = await resolveRepo(repo ?? context.config.actions.repo, context.repoRoot ?? context.cwd)
  return { api: new GithubApi(await githubToken()), repo: resolved }
}

/** Before leasing for `warmup --actions-runner`: the token and repository are there (fails fast, nothing leased). */
export async function checkActionsSetup(context: ServiceContext): Promise<void> {
  await github(context, undefined)
}

const slugPart = (text: string) => text.toLowerCase().replace(/[^a-z0-9_.-]+/g, '-')

/** The runner's labels: `crabbox`, one per lease, profile, class and slug, then the configured and given ones. */
export function runnerLabels(context: ServiceContext, shell: Pick<LeaseShell, 'leaseId' | 'name'>, extra: string[] = []): string[] {
  const { config } = context
  const labels = [
    'crabbox',
    `crabbox-${slugPart(shell.leaseId)}`,
    `crabbox-profile-${slugPart(config.profile)}`,
    `crabbox-class-${slugPart(config.class)}`,
    `crabbox-${slugPart(shell.name)}`,
    ...config.actions.runnerLabels,
    ...extra,
  ]
  return [...new Set(labels.map((label) => label.trim()).filter(Boolean))]
}

/** Registers and starts a runner on an open lease shell (installing `actions/runner` when it is missing). */
async function registerOn(
  context: ServiceContext,
  shell: LeaseShell,
  gh: Github,
  flags: Omit<RegisterFlags, 'id' | 'reclaim' | 'repo'>,
): Promise<RegisterResult> {
  const runnerName = flags.name ?? `crabbox-${slugPart(shell.leaseId)}`
  const labels = runnerLabels(context, shell, flags.labels)
  const ephemeral = flags.ephemeral ?? context.config.actions.ephemeral
  const url = `${githubServerUrl()}/${repoSlug(gh.repo)}`
  context.progress.phase(`registering runner ${runnerName} for ${repoSlug(gh.repo)}`)
  const configure = async () => {
    const { token } = await gh.api.registrationToken(gh.repo)
    return shell.sh(configureScript, [url, runnerName, labels.join(','), String(ephemeral)], { stdin: `${token}\n` })
  }
  let result = await configure()
  if (result.code === NOT_INSTALLED) {
    let version = flags.version ?? context.config.actions.runnerVersion
    if (version === 'latest') version = await gh.api.latestRunnerVersion()
    context.progress.phase(`installing actions/runner ${version} on ${shell.name}`)
    await mustSucceed(shell, 'installing actions/runner', installScript, [version, githubServerUrl()])
    result = await configure()
  }
  if (result.code !== 0) {
    const detail = result.stderr.trim().split('\n').slice(-5).join('\n')
    throw new CrabboxError(
      `${result.code === CONFIG_FAILED ? 'configuring' : 'starting'} the Actions runner on ${shell.name} failed${detail ? `: ${detail}` : ''}`,
      { hint: `the runner's own log is ~/.crabbox/actions/runner-config.log on the lease (crabbox ssh --id ${shell.name})` },
    )
  }
  return { leaseId: shell.leaseId, repo: repoSlug(gh.repo), runnerName, labels, ephemeral }
}

export async function registerRunner(context: ServiceContext, flags: RegisterFlags): Promise<RegisterResult> {
  const gh = await github(context, flags.repo)
  const shell = await leaseShell(context, flags)
  try {
    return await registerOn(context, shell, gh, flags)
  } finally {
    await shell.close()
  }
}

/** `key=value` pairs (config `actions.fields` first, then `-f`; a later key wins). */
export function parseFields(fields: string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const field of fields) {
    const at = field.indexOf('=')
    if (at <= 0) throw usageError(`bad field ${JSON.stringify(field)}: expected key=value`, 'pass -f key=value')
    out[field.slice(0, at).trim()] = field.slice(at + 1)
  }
  return out
}

/** The `workflow_dispatch` input names a workflow file declares. */
export function declaredInputs(workflowText: string): Set<string> {
  const doc = parseYaml(workflowText) as { on?: unknown; true?: unknown } | null
  const on = doc?.on ?? doc?.true
  const dispatch = on && typeof on === 'object' ? (on as Record<string, unknown>).workflow_dispatch : undefined
  const inputs = dispatch && typeof dispatch === 'object' ? (dispatch as { inputs?: unknown }).inputs : undefined
  return new Set(inputs && typeof inputs === 'object' ? Object.keys(inputs) : [])
}

async function dispatchWith(
  context: ServiceContext,
  gh: Github,
  flags: DispatchFlags,
  inputs: Record<string, string>,
): Promise<DispatchResult> {
  const workflow = flags.workflow ?? context.config.actions.workflow
  const ref = flags.ref ?? context.config.actions.ref ?? (await gh.api.defaultBranch(gh.repo))
  const since = Date.now() - 5000
  context.progress.phase(`dispatching ${workflow} on ${repoSlug(gh.repo)}@${ref}`)
  await gh.api.dispatch(gh.repo, workflow, ref, inputs)
  // The dispatch answers without the run: find it among the newest runs (it shows within seconds).
  let run: { id: number; html_url: string } | undefined
  for (let attempt = 0; attempt < 5 && !run; attempt++) {
    if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 1000))
    const runs = await gh.api.runs(gh.repo, workflow).catch(() => [])
    run = runs.find((candidate) => Date.parse(candidate.created_at) >= since)
  }
  return { repo: repoSlug(gh.repo), workflow, ref, inputs, runId: run?.id, runUrl: run?.html_url }
}

export async function dispatchWorkflow(context: ServiceContext, flags: DispatchFlags): Promise<DispatchResult> {
  const gh = await github(context, flags.repo)
  const inputs = parseFields([...context.config.actions.fields, ...(flags.fields ?? [])])
  return dispatchWith(context, gh, flags, inputs)
}

export interface HydrateFlags extends DispatchFlags {
  id: string
  reclaim?: boolean
  waitTimeoutMs: number
  keepAliveMinutes: number
}

export interface HydrateResult extends HydrationRecord {
  runnerLabel: string
  labels: string[]
}

/** The hydration inputs, checked against what the workflow declares (others are dropped, with a warning). */
async function hydrationInputs(context: ServiceContext, gh: Github, flags: HydrateFlags, leaseId: string, label: string) {
  const workflow = flags.workflow ?? context.config.actions.workflow
  const declared = declaredInputs(await gh.api.workflowText(gh.repo, workflow, flags.ref ?? context.config.actions.ref))
  const missing = REQUIRED_INPUTS.filter((name) => !declared.has(name))
  if (missing.length)
    throw usageError(
      `workflow ${workflow} in ${repoSlug(gh.repo)} does not declare the workflow_dispatch input${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`,
      'crabbox init --workflow writes a hydration workflow with them (docs/actions.md)',
    )
  const wanted: Record<string, string> = {
    ...parseFields([...context.config.actions.fields, ...(flags.fields ?? [])]),
    crabbox_id: leaseId,
    crabbox_runner_label: label,
    crabbox_keep_alive_minutes: String(flags.keepAliveMinutes),
    ...(context.config.actions.job ? { crabbox_job: context.config.actions.job } : {}),
  }
  const inputs: Record<string, string> = {}
  for (const [key, value] of Object.entries(wanted)) {
    if (declared.has(key)) inputs[key] = value
    else context.progress.warn(`workflow ${workflow} does not declare input ${key}: not sent`)
  }
  return inputs
}

export async function hydrateLease(context: ServiceContext, flags: HydrateFlags): Promise<HydrateResult> {
  const gh = await github(context, flags.repo)
  const shell = await leaseShell(context, flags)
  const heartbeat = leaseHeartbeat(shell.broker, { id: shell.leaseId, idleTimeoutSeconds: shell.idleTimeoutSeconds }, context.progress)
  try {
    const label = `crabbox-${slugPart(shell.leaseId)}`
    const inputs = await hydrationInputs(context, gh, flags, shell.leaseId, label)
    await mustSucceed(shell, 'clearing old hydration markers', clearMarkersScript(shell.leaseId))
    const runner = await registerOn(context, shell, gh, { ephemeral: true })
    // From here a failure or Ctrl-C takes the runner away again: none is left registered.
    const interrupt = interruptOnSignals()
    let dispatched: DispatchResult
    let marker: HydrationMarker | undefined
    try {
      dispatched = await unlessInterrupted(dispatchWith(context, gh, flags, inputs), interrupt.signal)
      marker = await unlessInterrupted(waitForMarker(context, shell, flags, dispatched.runUrl, interrupt.signal), interrupt.signal)
    } catch (error) {
      const gone = await deregister(shell, gh, runner.runnerName)
      context.progress.warn(`runner ${runner.runnerName} ${gone ? 'was deregistered' : 'could not be deregistered'} from ${runner.repo}`)
      throw error
    } finally {
      interrupt.dispose()
    }
    if (!marker) {
      const gone = await deregister(shell, gh, runner.runnerName)
      throw new CrabboxError(
        `Actions hydration of ${shell.name} timed out after ${Math.round(flags.waitTimeoutMs / 1000)}s: ` +
          (gone
            ? `runner ${runner.runnerName} was deregistered from ${runner.repo}`
            : `runner ${runner.runnerName} could not be deregistered`),
        {
          exit: 'provisioning',
          code: 'hydration_timeout',
          hint: dispatched.runUrl
            ? `see why the job did not reach the marker step: ${dispatched.runUrl}`
            : 'check the workflow run on GitHub',
        },
      )
    }
    const record: HydrationRecord = {
      leaseId: shell.leaseId,
      repo: runner.repo,
      runnerName: runner.runnerName,
      workspace: marker.workspace,
      ...(marker.envFile ? { envFile: marker.envFile } : {}),
      ...(marker.runId ? { runId: marker.runId } : dispatched.runId ? { runId: String(dispatched.runId) } : {}),
      ...(dispatched.runUrl ? { runUrl: dispatched.runUrl } : {}),
      ...(marker.readyAt ? { readyAt: marker.readyAt } : {}),
    }
    writeHydration(record)
    return { ...record, runnerLabel: label, labels: runner.labels }
  } finally {
    heartbeat.stop()
    await shell.close()
  }
}

const MARKER_POLL_MS = 3000

async function waitForMarker(
  context: ServiceContext,
  shell: LeaseShell,
  flags: Pick<HydrateFlags, 'waitTimeoutMs'>,
  runUrl: string | undefined,
  signal: AbortSignal,
) {
  const deadline = Date.now() + flags.waitTimeoutMs
  context.progress.phase(`waiting for the Actions job to hydrate ${shell.name}${runUrl ? ` (${runUrl})` : ''}`)
  while (!signal.aborted) {
    const marker = parseMarker((await shell.sh(readMarkerScript(shell.leaseId))).stdout)
    if (marker) return marker
    const left = deadline - Date.now()
    if (left <= 0) return undefined
    await new Promise((resolve) => setTimeout(resolve, Math.min(MARKER_POLL_MS, left)))
  }
  return undefined
}

/** Stops the runner process and removes the runner from the repository; true when none is left registered. */
export async function deregister(shell: LeaseShell, gh: Github, runnerName: string): Promise<boolean> {
  await shell.sh(stopRunnerScript).catch(() => undefined)
  try {
    for (const runner of await gh.api.runners(gh.repo)) if (runner.name === runnerName) await gh.api.deleteRunner(gh.repo, runner.id)
    return true
  } catch {
    return false
  }
}
