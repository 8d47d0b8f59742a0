import { Readable } from 'node:stream'
import { CrabboxError } from '../../errors.js'

/** Where the API key comes from, in order. */
export const API_KEY_VARIABLES = ['CRABBOX_ISLO_API_KEY', 'ISLO_API_KEY'] as const

/** One sandbox as the API describes it. */
export interface IsloSandbox {
  name: string
  status: string
  image?: string
  created_at?: string
}

/** What `POST /sandboxes` takes. */
export interface SandboxCreate {
  name: string
  image: string
  vcpus: number
  memory_mb: number
  disk_gb: number
  gateway_profile?: string
  snapshot_name?: string
}

/** One server-sent event: its `event:` name and its `data:` lines joined. */
export interface SseEvent {
  event: string
  data: string
}

/** The API key from the environment; missing is exit 3 naming the variable. */
export function apiKey(env: NodeJS.ProcessEnv): string {
  for (const name of API_KEY_VARIABLES) {
    const value = env[name]?.trim()
    if (value) return value
  }
  throw new CrabboxError(`islo needs an API key: ${API_KEY_VARIABLES[0]} (or ${API_KEY_VARIABLES[1]}) is not set`, {
    exit: 'auth',
    code: 'missing_credentials',
    hint: `export ${API_KEY_VARIABLES[0]}=<your Islo API key>`,
  })
}

/** The provider's own words for a failed call: `{"error":{"message"}}`, `{"detail"}` or `{"message"}`, plus the request ID. */
async function apiError(what: string, response: Response): Promise<CrabboxError> {
  const text = await response.text().catch(() => '')
  let message = text.trim().slice(0, 300)
  try {
    const body = JSON.parse(text) as { error?: { message?: string } | string; detail?: unknown; message?: string }
    const said = typeof body.error === 'object' ? body.error?.message : (body.error ?? body.message ?? body.detail)
    if (said !== undefined) message = typeof said === 'string' ? said : JSON.stringify(said)
  } catch {
    // not JSON: the text itself
  }
  const requestId = response.headers.get('x-request-id')
  const auth = response.status === 401 || response.status === 403
  return new CrabboxError(
    `islo ${what} failed (HTTP ${response.status})${message ? `: ${message}` : ''}${requestId ? ` (request ${requestId})` : ''}`,
    {
      exit: auth ? 'auth' : response.status === 404 ? 'notFound' : 'error',
      code: auth ? 'auth' : 'provider_error',
      ...(auth && { hint: `check ${API_KEY_VARIABLES[0]} (or ${API_KEY_VARIABLES[1]})` }),
    },
  )
}

/** A small client for the calls crabbox makes: sandboxes, archive upload, exec over SSE. */
export class IsloClient {
  constructor(
    private readonly baseUrl: string,
    private readonly key: string,
  ) {}

  private async call(
    what: string,
    method: string,
    path: string,
    init: { json?: unknown; body?: RequestInit['body']; signal?: AbortSignal } = {},
  ) {
    const headers: Record<string, string> = { authorization: `Bearer ${this.key}`, accept: 'application/json' }
    if (init.json !== undefined) headers['content-type'] = 'application/json'
    else if (init.body !== undefined) headers['content-type'] = 'application/gzip'
    let response: Response
    try {
      response = await fetch(`${this.baseUrl.replace(/\/+$/, '')}${path}`, {
        method,
        headers,
        body: init.json !== undefined ? JSON.stringify(init.json) : init.body,
        signal: init.signal,
        ...(init.body !== undefined && { duplex: 'half' }),
      } as RequestInit)
    } catch (error) {
      if (init.signal?.aborted) throw error
      throw new CrabboxError(`islo ${what} failed: ${(error as Error).message}`, { cause: error })
    }
    if (!response.ok) throw await apiError(what, response)
    return response
  }

  async create(spec: SandboxCreate): Promise<IsloSandbox> {
    return (await (await this.call('sandbox create', 'POST', '/sandboxes', { json: spec })).json()) as IsloSandbox
  }

  async get(name: string): Promise<IsloSandbox> {
    return (await (await this.call('sandbox get', 'GET', `/sandboxes/${encodeURIComponent(name)}`)).json()) as IsloSandbox
  }

  /** Every sandbox, page by page (`next_cursor`). */
  async list(): Promise<IsloSandbox[]> {
    const all: IsloSandbox[] = []
    let cursor: string | undefined
    do {
      const query = `?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`
      const page = (await (await this.call('sandbox list', 'GET', `/sandboxes${query}`)).json()) as {
        items?: IsloSandbox[]
        next_cursor?: string | null
      }
      all.push(...(page.items ?? []))
      cursor = page.next_cursor ?? undefined
    } while (cursor)
    return all
  }

  /** Deletes a sandbox; one already gone is fine. */
  async delete(name: string): Promise<void> {
    try {
      await this.call('sandbox delete', 'DELETE', `/sandboxes/${encodeURIComponent(name)}`)
    } catch (error) {
      if (error instanceof CrabboxError && error.exitCode === 4) return
      throw error
    }
  }

  /** Uploads a gzipped tar and extracts it into `path` on the sandbox. */
  async upload(name: string, path: string, archive: NodeJS.ReadableStream): Promise<void> {
    const body = Readable.toWeb(Readable.from(archive)) as unknown as RequestInit['body']
    await this.call('archive upload', 'PUT', `/sandboxes/${encodeURIComponent(name)}/archive?path=${encodeURIComponent(path)}`, { body })
  }

  /** Starts a command; the events (`started`, `stdout`, `stderr`, `exit`, `error`) arrive as the stream goes. */
  async *exec(name: string, command: string[], workdir: string, signal: AbortSignal): AsyncGenerator<SseEvent> {
    const response = await this.call('exec', 'POST', `/sandboxes/${encodeURIComponent(name)}/exec/stream`, {
      json: { command, workdir },
      signal,
    })
    if (!response.body) return
    yield* parseSse(response.body)
  }

  /** Passes a signal to a running command. */
  async signal(name: string, execId: string, signal: string): Promise<void> {
    await this.call('exec signal', 'POST', `/sandboxes/${encodeURIComponent(name)}/exec/${encodeURIComponent(execId)}/signal`, {
      json: { signal },
    })
  }
}

/** Server-sent events from a byte stream: blank-line separated blocks of `event:` and `data:` lines. */
export async function* parseSse(body: AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const decoder = new TextDecoder()
  let buffer = ''
  const take = (block: string): SseEvent | undefined => {
    let event = 'message'
    const data: string[] = []
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith(':')) continue
      const colon = line.indexOf(':')
      const field = colon === -1 ? line : line.slice(0, colon)
      const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '')
      if (field === 'event') event = value
      else if (field === 'data') data.push(value)
    }
    return data.length > 0 || event !== 'message' ? { event, data: data.join('\n') } : undefined
  }
  for await (const chunk of body as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true })
    let end: RegExpExecArray | null
    while ((end = /\r?\n\r?\n/.exec(buffer))) {
      const parsed = take(buffer.slice(0, end.index))
      buffer = buffer.slice(end.index + end[0].length)
      if (parsed) yield parsed
    }
  }
  // A last block without its blank line is cut off mid-event: not an event.
}
