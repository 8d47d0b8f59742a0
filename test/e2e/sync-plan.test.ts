import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { cliHome, runCli } from '../support/cli.js'
import { put as putFile } from '../support/fixtures.js'

describe('crabbox sync-plan', () => {
  const repo = mkdtempSync(join(tmpdir(), 'crabbox-sync-plan-'))
  const home = cliHome()
  afterAll(() => {
    rmSync(repo, { recursive: true, force: true })
    rmSync(home.dir, { recursive: true, force: true })
  })
  const put = (path: string, bytes: number) => putFile(repo, path, Buffer.alloc(bytes, 97))
  const git = (...args: string[]) =>
    execFileSync('git', ['-C', repo, ...args], {
      env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' },
    })

  it('reports files, bytes, local deletions and the largest files and folders without leasing anything', async () => {
    git('init', '-q')
    put('packages/app/src/big.bin', 300_000)
    put('packages/app/src/small.ts', 1000)
    put('packages/lib/index.ts', 20_000)
    put('README.md', 100)
    put('gone.txt', 10)
    git('add', '-A')
    git('commit', '-qm', 'init')
    rmSync(join(repo, 'gone.txt'))
    put('node_modules/dep/huge.js', 5_000_000)
    put('untracked.ts', 50)

    const json = await runCli(['sync-plan', '--json', '--limit', '2'], { cwd: join(repo, 'packages'), home })
    expect(json.code).toBe(0)
    const plan = JSON.parse(json.stdout)
    expect(plan).toMatchObject({
      root: repo,
      git: true,
      files: 5,
      bytes: 300_000 + 1000 + 20_000 + 100 + 50,
      deletedTracked: 1,
      deleted: ['gone.txt'],
      largestFiles: [
        { path: 'packages/app/src/big.bin', bytes: 300_000 },
        { path: 'packages/lib/index.ts', bytes: 20_000 },
      ],
      largestDirs: [
        { path: 'packages/app', files: 2, bytes: 301_000 },
        { path: 'packages/lib', files: 1, bytes: 20_000 },
      ],
    })

    const text = await runCli(['sync-plan', '--limit', '1'], { cwd: repo, home })
    expect(text.code).toBe(0)
    expect(text.stdout).toMatch(/^sync candidate: 5 files, 314 KiB/)
    expect(text.stdout).toMatch(/deleted tracked files: 1\n {2}gone.txt\n/)
    expect(text.stdout).toMatch(
      /largest files:\n +293 KiB {2}packages\/app\/src\/big\.bin\nlargest folders:\n +294 KiB +2 files {2}packages\/app\n$/,
    )

    const bad = await runCli(['sync-plan', '--limit', '0'], { cwd: repo, home })
    expect(bad.code).toBe(2)
  })
})
