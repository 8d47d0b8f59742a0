import { execFileSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, expect } from 'vitest'
import { cliHome, type CliHome } from './cli.js'

/** A small committed git checkout to run from, so each sync is quick. */
export function gitRepo(prefix = 'crabbox-repo-', files: Record<string, string> = { 'hello.txt': 'hello from the checkout\n' }): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text)
  execFileSync('git', ['init', '-q'], { cwd: dir })
  execFileSync('git', ['add', '.'], { cwd: dir })
  execFileSync('git', ['-c', 'user.email=t@example.com', '-c', 'user.name=t', 'commit', '-qm', 'init'], { cwd: dir })
  return dir
}

/** Runs git in `cwd` with a fixed test identity; returns its stdout. */
export const git = (cwd: string, ...args: string[]) =>
  execFileSync('git', ['-C', cwd, ...args], { encoding: 'utf8', env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' } })

/** Calls the broker's HTTP API as a test user; any non-2xx fails the test with the route named. */
export function brokerApi(url: () => string, headers: Record<string, string>) {
  return async (method: string, path: string, body?: unknown): Promise<any> => {
    const response = await fetch(`${url()}${path}`, {
      method,
      headers: { ...headers, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    expect(response.status, `${method} ${path}`).toBeLessThan(300)
    return response.json()
  }
}

/** Collects a CLI subprocess's output as it arrives; `done` resolves with its exit code. */
export function collectOutput(child: ChildProcess): { stdout: () => string; stderr: () => string; done: Promise<number | null> } {
  let stdout = ''
  let stderr = ''
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  child.stdin!.end()
  const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  return { stdout: () => stdout, stderr: () => stderr, done }
}

/** Polls `probe` until it returns a value, failing with `what` after `timeoutMs`. */
export async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 60_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

/** A fresh CLI home per call, each removed after the test that made it. */
export function homePerTest(): () => CliHome {
  const homes: CliHome[] = []
  afterEach(() => {
    for (const made of homes.splice(0)) rmSync(made.dir, { recursive: true, force: true })
  })
  return () => {
    const made = cliHome()
    homes.push(made)
    return made
  }
}
