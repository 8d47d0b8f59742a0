import { execFileSync, type ChildProcess } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs'
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
  execFileSync('git', ['-C', cwd, ...args], {
    encoding: 'utf8',
    env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' },
  })

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

/** Resolves when the child's stdout has shown `text`; rejects if it exits first (with its stderr). */
export function stdoutShows(child: ChildProcess, text: string): Promise<void> {
  let stdout = ''
  let stderr = ''
  child.stderr!.on('data', (d) => (stderr += d))
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d) => (stdout += d).includes(text) && resolve())
    child.on('close', (code) => reject(new Error(`CLI exited ${code} before printing ${text}:\n${stderr}`)))
  })
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * Polls `probe` until it returns a value (anything but undefined, null or false) and resolves
 * with it; fails with `what` after `timeoutMs`.
 */
export async function until<T>(
  what: string,
  probe: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  timeoutMs = 60_000,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined && value !== null && value !== false) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(everyMs)
  }
}

/**
 * Resolves once the clock is past the second in which `repo`'s git index was last written:
 * an index from this second is not vouched for (git compares ctimes to the second).
 */
export async function indexSettles(repo: string): Promise<void> {
  const second = Math.floor(statSync(join(repo, '.git', 'index')).mtimeMs / 1000)
  while (Math.floor(Date.now() / 1000) <= second) await sleep(25)
}

export interface PutOptions {
  /** File mode to set after writing. */
  mode?: number
  /**
   * Back-dates the file a minute (`'file'`), or the file and every folder up to `root`
   * (`'tree'`): outside the racy window in which sync re-checks a fresh file every time.
   */
  aged?: 'file' | 'tree'
}

/** Writes `content` to `root/path`, making its folders first. */
export function put(root: string, path: string, content: string | Buffer, options: PutOptions = {}): void {
  const file = join(root, path)
  mkdirSync(join(file, '..'), { recursive: true })
  writeFileSync(file, content)
  if (options.mode !== undefined) chmodSync(file, options.mode)
  if (options.aged) {
    const old = new Date(Date.now() - 60_000)
    utimesSync(file, old, old)
    if (options.aged === 'tree') for (let dir = join(file, '..'); dir.startsWith(root); dir = join(dir, '..')) utimesSync(dir, old, old)
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
