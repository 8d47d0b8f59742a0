import { readdirSync, readFileSync } from 'node:fs'
import { request } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startBroker, type BrokerHandle } from '../support/broker.js'

/**
 * Finding 1 of the security review, measured on the real runtime: a 100 MB chunked
 * upload (no Content-Length) must not grow the broker's workerd process by more than
 * MAX_GROWTH_BYTES, on the unauthenticated login poll and on an authenticated route.
 * The broker runs under `crabbox broker dev`; the object lives in its workerd process.
 */

const ATTACK_BYTES = 100 * 1000 * 1000
/** Allowed growth of the workerd process's resident memory while it refuses the upload. */
const MAX_GROWTH_BYTES = 32 * 1024 * 1024
const SHARED_TOKEN = 'memory-shared-token'

let broker: BrokerHandle
let workerdPids: number[]

function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
  } catch {
    return []
  }
}

function parentOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
  } catch {
    return 0
  }
}

function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim()
  } catch {
    return ''
  }
}

/**
 * The workerd processes under the wrangler that persists to this broker's state folder
 * (wrangler runs the broker's Worker and its own dev proxy, each in a workerd).
 */
function findWorkerd(stateDir: string): number[] {
  const pids = readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)
  const wrangler = pids.filter((pid) => {
    const args = cmdline(pid)
    const at = args.indexOf('--persist-to')
    return at >= 0 && args[at + 1] === stateDir
  })
  const isUnder = (pid: number): boolean => {
    for (let p = parentOf(pid), hops = 0; p > 1 && hops < 10; p = parentOf(p), hops++) if (wrangler.includes(p)) return true
    return false
  }
  const found = pids.filter((pid) => comm(pid) === 'workerd' && isUnder(pid))
  if (found.length === 0) throw new Error(`no workerd under the broker (wrangler ${wrangler.join(',') || 'none'})`)
  return found
}

/** Resident memory of the broker's workerd processes together. */
function rssBytes(pids: number[]): number {
  let total = 0
  for (const pid of pids) {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    total += Number(match![1]) * 1024
  }
  return total
}

/**
 * `chunkedPost`, again when the connection was reset before the answer could be read: a
 * server that answers 413 and closes while the client still sends makes the client's kernel
 * reset the connection, and the reset can discard the 413 already received (a TCP race, not
 * the broker's). Every attempt counts towards the memory peak.
 */
async function chunkedPostAnswered(path: string, headers: Record<string, string>): Promise<{ status: number; sent: number }> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await chunkedPost(path, headers)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ECONNRESET' || attempt === 3) throw error
    }
  }
}

/** Streams `ATTACK_BYTES` chunked to `path` until the broker answers or the body is sent. */
function chunkedPost(path: string, headers: Record<string, string>): Promise<{ status: number; sent: number }> {
  return new Promise((resolve, reject) => {
    let sent = 0
    let answered = false
    const chunk = Buffer.alloc(64 * 1024, 0x61)
    const req = request(
      `${broker.url}${path}`,
      { method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked', ...headers } },
      (res) => {
        answered = true
        res.resume()
        const done = () => {
          resolve({ status: res.statusCode ?? 0, sent })
          req.destroy()
        }
        res.once('end', done)
        res.once('close', done)
      },
    )
    req.once('error', (error) => {
      if (!answered) reject(error)
    })
    const pump = () => {
      while (!answered && sent < ATTACK_BYTES) {
        sent += chunk.length
        if (!req.write(chunk)) return req.once('drain', pump)
      }
      if (!answered) req.end()
    }
    req.write('{"x":"')
    pump()
  })
}

/** Peak resident growth of workerd while `attack` runs, sampled every 20 ms. */
async function peakGrowth(attack: () => Promise<unknown>): Promise<number> {
  const before = rssBytes(workerdPids)
  let peak = before
  const sampler = setInterval(() => {
    try {
      peak = Math.max(peak, rssBytes(workerdPids))
    } catch {}
  }, 20)
  try {
    await attack()
    // Let the object finish whatever it was still doing with the body.
    await new Promise((r) => setTimeout(r, 500))
    peak = Math.max(peak, rssBytes(workerdPids))
  } finally {
    clearInterval(sampler)
  }
  return peak - before
}

beforeAll(async () => {
  broker = await startBroker({
    env: {
      CRABBOX_SHARED_TOKEN: SHARED_TOKEN,
      CRABBOX_SESSION_SECRET: 'memory-session-secret',
      CRABBOX_GITHUB_CLIENT_ID: 'id',
      CRABBOX_GITHUB_CLIENT_SECRET: 'secret',
    },
  })
  workerdPids = findWorkerd(broker.stateDir)
  // Warm up the Worker and the Fleet object so their baseline memory is in place.
  for (const path of ['/v1/health', '/v1/whoami'])
    await (
      await fetch(`${broker.url}${path}`, { headers: { authorization: `Bearer ${SHARED_TOKEN}`, 'x-crabbox-owner': 'warm@example.com' } })
    ).text()
  await (await fetch(`${broker.url}/v1/auth/github/poll`, { method: 'POST', body: '{}' })).text()
})
afterAll(async () => {
  await broker?.stop()
})

describe('finding 1 on workerd: memory stays bounded for a 100 MB chunked upload', () => {
  it(`the unauthenticated login poll grows workerd by < ${MAX_GROWTH_BYTES / 1024 / 1024} MiB`, async () => {
    let result: { status: number; sent: number } | undefined
    const growth = await peakGrowth(async () => (result = await chunkedPostAnswered('/v1/auth/github/poll', {})))
    expect(result!.status).toBe(413)
    expect(growth, `workerd grew by ${(growth / 1024 / 1024).toFixed(1)} MiB`).toBeLessThan(MAX_GROWTH_BYTES)
  })

  it(`an authenticated route grows workerd by < ${MAX_GROWTH_BYTES / 1024 / 1024} MiB`, async () => {
    let result: { status: number; sent: number } | undefined
    const growth = await peakGrowth(
      async () =>
        (result = await chunkedPostAnswered('/v1/leases', {
          authorization: `Bearer ${SHARED_TOKEN}`,
          'x-crabbox-owner': 'memory@example.com',
        })),
    )
    expect(result!.status).toBe(413)
    expect(growth, `workerd grew by ${(growth / 1024 / 1024).toFixed(1)} MiB`).toBeLessThan(MAX_GROWTH_BYTES)
  })
})
