import { createServer, type Server } from 'node:http'
import { parse as parseYaml } from 'yaml'

/**
 * A fake GitHub for Actions hydration. The CLI-facing half speaks GitHub's REST wire shapes
 * (bearer token required): runner registration tokens, a workflow and its file contents,
 * `workflow_dispatch` (422 on undeclared inputs, as GitHub answers), the workflow's runs,
 * the repository's self-hosted runners (list, delete) and the repository itself.
 *
 * The other half, under `/_standin/`, is what GitHub's runner service would be to the
 * stand-in runner (test/support/standin-runner.ts): register with a registration token,
 * poll for a job whose `runs-on` label it carries, report the job done (an ephemeral
 * runner is then removed, as GitHub does).
 */

export interface FakeRunner {
  id: number
  name: string
  os: string
  status: 'online' | 'offline'
  busy: boolean
  ephemeral: boolean
  labels: { id: number; name: string; type: 'read-only' | 'custom' }[]
}

export interface FakeRun {
  id: number
  workflow: string
  ref: string
  inputs: Record<string, string>
  status: 'queued' | 'in_progress' | 'completed'
  conclusion: string | null
  created_at: string
  runnerId?: number
}

export interface FakeActionsOptions {
  repo?: string
  token?: string
  /** Workflow file name → YAML text (served through the contents API). */
  workflows?: Record<string, string>
}

interface FakeState {
  registrationTokens: Map<string, number>
  runners: Map<number, FakeRunner>
  runs: FakeRun[]
  holdJobs: boolean
  next(): number
}

const json = (status: number, body?: unknown) =>
  new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: body === undefined ? {} : { 'content-type': 'application/json; charset=utf-8' },
  })
const text = (status: number, body = '') => new Response(body, { status, headers: { 'content-type': 'text/plain' } })

/** What the runner service is to the stand-in runner: register, take a job, finish it. */
async function standin(state: FakeState, request: Request, url: URL): Promise<Response> {
  const { registrationTokens, runners, runs } = state
  if (request.method === 'POST' && url.pathname === '/_standin/register') {
    const auth = (request.headers.get('authorization') ?? '').replace(/^RemoteAuth /, '')
    const expires = registrationTokens.get(auth)
    if (!expires || expires < Date.now()) return text(401, 'bad registration token')
    registrationTokens.delete(auth)
    const body = (await request.json()) as { name: string; labels: string[]; ephemeral: boolean }
    for (const [id, runner] of runners) if (runner.name === body.name) runners.delete(id) // --replace
    const id = state.next()
    const labels = ['self-hosted', 'Linux', 'X64', ...body.labels].map((name, i) => ({
      id: i + 1,
      name,
      type: (i < 3 ? 'read-only' : 'custom') as 'read-only' | 'custom',
    }))
    runners.set(id, { id, name: body.name, os: 'Linux', status: 'online', busy: false, ephemeral: body.ephemeral, labels })
    return text(200, `${id}\n`)
  }
  const job = /^\/_standin\/runners\/(\d+)\/job$/.exec(url.pathname)
  if (request.method === 'GET' && job) {
    const runner = runners.get(Number(job[1]))
    if (!runner) return text(410, 'runner removed')
    const run = state.holdJobs
      ? undefined
      : runs.find((r) => r.status === 'queued' && runner.labels.some((label) => label.name === r.inputs.crabbox_runner_label))
    if (!run) return text(204)
    run.status = 'in_progress'
    run.runnerId = runner.id
    runner.busy = true
    const lines = [`RUN_ID=${run.id}`, ...Object.entries(run.inputs).map(([key, value]) => `INPUT_${key}=${value}`)]
    return text(200, `${lines.join('\n')}\n`)
  }
  const done = /^\/_standin\/runs\/(\d+)\/complete$/.exec(url.pathname)
  if (request.method === 'POST' && done) {
    const run = runs.find((r) => r.id === Number(done[1]))
    if (!run) return text(404)
    run.status = 'completed'
    run.conclusion = 'success'
    const runner = run.runnerId ? runners.get(run.runnerId) : undefined
    if (runner?.ephemeral) runners.delete(runner.id)
    else if (runner) runner.busy = false
    return text(200, 'ok\n')
  }
  return text(404)
}

export function createFakeActions(options: FakeActionsOptions) {
  const repo = options.repo ?? 'acme/app'
  const token = options.token ?? 'ghp_fake_actions_token'
  const workflows = new Map(Object.entries(options.workflows ?? {}))
  let counter = 100
  const state: FakeState = { registrationTokens: new Map(), runners: new Map(), runs: [], holdJobs: false, next: () => ++counter }
  const { registrationTokens, runners, runs } = state
  const calls: { method: string; path: string }[] = []
  const issued: string[] = []
  let baseUrl = ''

  const runView = (run: FakeRun) => ({
    id: run.id,
    name: 'crabbox',
    event: 'workflow_dispatch',
    head_branch: run.ref,
    status: run.status,
    conclusion: run.conclusion,
    created_at: run.created_at,
    html_url: `${baseUrl}/${repo}/actions/runs/${run.id}`,
  })
  const workflowView = (file: string) => ({
    id: 1000 + [...workflows.keys()].indexOf(file),
    name: file,
    path: `.github/workflows/${file}`,
    state: 'active',
  })

  async function handler(request: Request): Promise<Response> {
    const url = new URL(request.url)
    calls.push({ method: request.method, path: url.pathname })
    if (url.pathname.startsWith('/_standin/')) return standin(state, request, url)
    if ((request.headers.get('authorization') ?? '') !== `Bearer ${token}`) return json(401, { message: 'Bad credentials' })
    const prefix = `/repos/${repo}`
    if (!url.pathname.startsWith(prefix)) return json(404, { message: 'Not Found' })
    const path = url.pathname.slice(prefix.length)
    if (request.method === 'GET' && path === '') return json(200, { full_name: repo, default_branch: 'main' })
    if (request.method === 'POST' && path === '/actions/runners/registration-token') {
      const value = `AREG${state.next()}FAKE`
      registrationTokens.set(value, Date.now() + 3_600_000)
      issued.push(value)
      return json(201, { token: value, expires_at: new Date(Date.now() + 3_600_000).toISOString() })
    }
    if (request.method === 'GET' && path === '/actions/runners')
      return json(200, { total_count: runners.size, runners: [...runners.values()].map(({ ephemeral: _, ...runner }) => runner) })
    const runner = /^\/actions\/runners\/(\d+)$/.exec(path)
    if (request.method === 'DELETE' && runner) {
      if (!runners.delete(Number(runner[1]))) return json(404, { message: 'Not Found' })
      return json(204)
    }
    const contents = /^\/contents\/\.github\/workflows\/([^/]+)$/.exec(path)
    if (request.method === 'GET' && contents) {
      const file = workflows.get(contents[1]!)
      if (file === undefined) return json(404, { message: 'Not Found' })
      return json(200, {
        type: 'file',
        encoding: 'base64',
        name: contents[1],
        path: `.github/workflows/${contents[1]}`,
        content: Buffer.from(file).toString('base64'),
      })
    }
    const wf = /^\/actions\/workflows\/([^/]+)(\/dispatches|\/runs)?$/.exec(path)
    const file = wf ? decodeURIComponent(wf[1]!) : ''
    if (wf && !workflows.has(file)) return json(404, { message: 'Not Found' })
    if (request.method === 'GET' && wf && !wf[2]) return json(200, workflowView(file))
    if (request.method === 'GET' && wf?.[2] === '/runs') {
      const list = runs.filter((r) => r.workflow === file).reverse()
      return json(200, { total_count: list.length, workflow_runs: list.map(runView) })
    }
    if (request.method === 'POST' && wf?.[2] === '/dispatches') {
      const body = (await request.json()) as { ref?: string; inputs?: Record<string, string> }
      if (!body.ref) return json(422, { message: 'Invalid request.\n\n"ref" wasn\'t supplied.' })
      const declared = Object.keys(
        (parseYaml(workflows.get(file)!) as { on?: { workflow_dispatch?: { inputs?: object } } }).on?.workflow_dispatch?.inputs ?? {},
      )
      const unexpected = Object.keys(body.inputs ?? {}).filter((key) => !declared.includes(key))
      if (unexpected.length) return json(422, { message: `Unexpected inputs provided: ${JSON.stringify(unexpected)}` })
      runs.push({
        id: state.next(),
        workflow: file,
        ref: body.ref,
        inputs: body.inputs ?? {},
        status: 'queued',
        conclusion: null,
        created_at: new Date().toISOString(),
      })
      return json(204)
    }
    return json(404, { message: 'Not Found' })
  }

  return {
    handler,
    repo,
    token,
    runners,
    runs,
    calls,
    /** Every registration token handed out (to check none reaches a log). */
    issued,
    holdJobs: (hold: boolean) => void (state.holdJobs = hold),
    setBaseUrl: (url: string) => void (baseUrl = url),
  }
}

export type FakeActions = ReturnType<typeof createFakeActions>

/** Serves the fake on `host` (a test host's root-side address, so its stand-in runner reaches it too). */
export async function serveOn(
  handler: (request: Request) => Promise<Response>,
  host: string,
): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const headers = new Headers()
      for (const [key, value] of Object.entries(req.headers)) if (typeof value === 'string') headers.set(key, value)
      const body = chunks.length && req.method !== 'GET' && req.method !== 'HEAD' ? Buffer.concat(chunks) : undefined
      handler(new Request(`http://${req.headers.host}${req.url}`, { method: req.method, headers, body })).then(
        async (response) => {
          const out: Record<string, string> = {}
          response.headers.forEach((value, key) => (out[key] = value))
          res.writeHead(response.status, out)
          res.end(Buffer.from(await response.arrayBuffer()))
        },
        (error: unknown) => {
          res.writeHead(500)
          res.end(String(error))
        },
      )
    })
  })
  await new Promise<void>((resolve) => server.listen(0, host, resolve))
  const { port } = server.address() as { port: number }
  return {
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
