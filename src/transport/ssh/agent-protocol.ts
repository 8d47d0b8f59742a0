import * as v from 'valibot'

import { CLAIM_NAME } from './agent-frames.js'

export { encodeFrame, Frame, frameDecoder } from './agent-frames.js'

/**
 * The connection agent's wire format over its unix socket: one request per
 * socket connection, then binary frames `[type u8][length u32 BE][payload]`.
 * Raw frames carry stdin/stdout/stderr bytes; JSON frames are validated here.
 */
export const AgentTarget = v.object({
  host: v.string(),
  port: v.number(),
  fallbackPorts: v.array(v.number()),
  user: v.string(),
  privateKeyPath: v.string(),
  knownHostsPath: v.string(),
  agentSocket: v.optional(v.string()),
})

export const AgentRequest = v.variant('op', [
  v.object({
    op: v.literal('exec'),
    target: AgentTarget,
    command: v.string(),
    cwd: v.optional(v.string()),
    env: v.optional(v.record(v.string(), v.string())),
    stdin: v.boolean(),
  }),
  // One request for a warm command: connect (from the pool when held), answer `connected`, then exec.
  v.object({
    op: v.literal('connect-exec'),
    target: AgentTarget,
    connectTimeoutMs: v.optional(v.number()),
    command: v.string(),
    cwd: v.optional(v.string()),
    env: v.optional(v.record(v.string(), v.string())),
    stdin: v.boolean(),
  }),
  v.object({ op: v.literal('connect'), target: AgentTarget, connectTimeoutMs: v.optional(v.number()) }),
  v.object({ op: v.literal('status') }),
  // The stamp of a checkout's file watcher (agent-watch.ts); `skip`: folders under root it leaves out;
  // `since`: a stamp kept earlier, to name the paths moved after it.
  v.object({
    op: v.literal('watch'),
    root: v.string(),
    skip: v.array(v.string()),
    since: v.optional(v.object({ id: v.string(), seq: v.number() })),
  }),
  v.object({ op: v.literal('stop') }),
  // The agent lane (agent-lane.ts): a thin client's command, as it would send it to a spare worker;
  // declined before anything ran unless a route for it is on file.
  v.object({
    op: v.literal('lane'),
    build: v.string(),
    argv: v.array(v.string()),
    bin: v.string(),
    cwd: v.string(),
    env: v.record(v.string(), v.string()),
    claim: v.pipe(v.string(), v.regex(CLAIM_NAME)),
  }),
  // A spare worker's route for the commands like the one it ran.
  v.object({
    op: v.literal('lane-route'),
    build: v.string(),
    fast: v.object({
      command: v.picklist(['ssh', 'run']),
      flags: v.record(v.string(), v.union([v.string(), v.boolean()])),
      lease: v.optional(v.string()),
    }),
    cwd: v.string(),
    env: v.record(v.string(), v.string()),
    target: AgentTarget,
    prefix: v.string(),
    stamps: v.array(v.tuple([v.string(), v.string()])),
    // `run`: what its pipeline resolved (agent-lane.ts, RunFacts); `sync` for a run that syncs.
    run: v.optional(
      v.object({
        env: v.record(v.string(), v.string()),
        leaseId: v.string(),
        slug: v.string(),
        provider: v.string(),
        sync: v.optional(
          v.object({
            repoRoot: v.string(),
            workdir: v.string(),
            stateDir: v.string(),
            config: v.record(v.string(), v.unknown()),
          }),
        ),
      }),
    ),
  }),
])
export type AgentRequest = v.InferOutput<typeof AgentRequest>

export const AgentSignal = v.object({ name: v.string() })

export const AgentConnected = v.object({ port: v.number() })

export const AgentConnection = v.object({
  target: v.string(),
  port: v.number(),
  busy: v.number(),
  idleMs: v.number(),
})

export const AgentStatus = v.object({
  pid: v.number(),
  socketPath: v.string(),
  startedAt: v.string(),
  idleTimeoutMs: v.number(),
  connections: v.array(AgentConnection),
})
export type AgentStatus = v.InferOutput<typeof AgentStatus>

export const AgentWatchStamp = v.object({ id: v.string(), seq: v.number(), paths: v.optional(v.array(v.string())) })

export const AgentError = v.object({
  message: v.string(),
  exitCode: v.number(),
  code: v.string(),
  hint: v.optional(v.string()),
})

export const AgentReply = v.union([
  v.object({
    ok: v.literal(true),
    result: v.optional(v.object({ code: v.nullable(v.number()), signal: v.optional(v.string()) })),
    port: v.optional(v.number()),
    status: v.optional(AgentStatus),
    watch: v.optional(AgentWatchStamp),
  }),
  v.object({ ok: v.literal(false), error: AgentError }),
])
export type AgentReply = v.InferOutput<typeof AgentReply>

export const parseJson = <T extends v.GenericSchema>(schema: T, payload: Buffer): v.InferOutput<T> =>
  v.parse(schema, JSON.parse(payload.toString('utf8')))
