import { execFileSync } from 'node:child_process'
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { homePerTest } from '../support/fixtures.js'
import { runCli } from '../support/cli.js'

const home = homePerTest()

describe('init', () => {
  it('writes a loadable .crabbox.yaml, the agent skill and the workflow at the git root, and refuses to overwrite without --force', async () => {
    const h = home()
    const repo = join(h.dir, 'My Repo')
    mkdirSync(join(repo, 'src'), { recursive: true })
    execFileSync('git', ['init', '-q', repo])

    const first = await runCli(['init'], { home: h, cwd: join(repo, 'src') })
    expect(first.code, first.stderr).toBe(0)
    expect(first.stdout).toBe('wrote .crabbox.yaml\nwrote .agents/skills/crabbox/SKILL.md\nwrote .github/workflows/crabbox.yml\n')
    expect(readFileSync(join(repo, '.agents', 'skills', 'crabbox', 'SKILL.md'), 'utf8')).toContain('crabbox run -- npm test')
    const workflow = parse(readFileSync(join(repo, '.github', 'workflows', 'crabbox.yml'), 'utf8'))
    expect(workflow.jobs.test.steps.map((step: { run?: string }) => step.run).filter(Boolean)).toContain(
      'crabbox run --shell -- "$CRABBOX_COMMAND"',
    )

    const show = JSON.parse((await runCli(['config', 'show', '--json'], { home: h, cwd: repo })).stdout)
    expect(show.config.profile).toBe('my-repo-check')
    expect(show.sources.profile).toBe(join(repo, '.crabbox.yaml'))

    writeFileSync(join(repo, '.crabbox.yaml'), 'class: fast\n')
    const again = await runCli(['init'], { home: h, cwd: repo })
    expect(again.code).toBe(2)
    expect(again.stderr).toContain('.crabbox.yaml, .agents/skills/crabbox/SKILL.md and .github/workflows/crabbox.yml already exist')
    expect(again.stderr).toContain('--force')
    expect(readFileSync(join(repo, '.crabbox.yaml'), 'utf8')).toBe('class: fast\n')

    const forced = await runCli(['init', '--force', '--json'], { home: h, cwd: repo })
    expect(forced.code).toBe(0)
    expect(JSON.parse(forced.stdout)).toEqual({
      repoRoot: repo,
      written: ['.crabbox.yaml', '.agents/skills/crabbox/SKILL.md', '.github/workflows/crabbox.yml'],
    })
    expect(readFileSync(join(repo, '.crabbox.yaml'), 'utf8')).toContain('profile: my-repo-check')
  })

  it('--config, --skill and --workflow write the files elsewhere in the repository; a path outside it is exit 2', async () => {
    const h = home()
    const repo = join(h.dir, 'paths')
    mkdirSync(repo, { recursive: true })
    execFileSync('git', ['init', '-q', repo])
    writeFileSync(join(repo, 'package.json'), '{}\n')
    const args = ['init', '--config', 'crabbox.yaml', '--skill', 'docs/crabbox.md', '--workflow', '.github/workflows/remote.yml']
    const written = await runCli([...args, '--json'], { home: h, cwd: repo })
    expect(written.code, written.stderr).toBe(0)
    expect(JSON.parse(written.stdout).written).toEqual(['crabbox.yaml', 'docs/crabbox.md', '.github/workflows/remote.yml'])
    const workflow = parse(readFileSync(join(repo, '.github', 'workflows', 'remote.yml'), 'utf8'))
    expect(workflow.on.workflow_dispatch.inputs.command.default).toBe('npm test')

    const again = await runCli(args, { home: h, cwd: repo })
    expect(again.code).toBe(2)
    expect(again.stderr).toContain('.github/workflows/remote.yml already exist')

    const outside = await runCli(['init', '--workflow', '../elsewhere.yml'], { home: h, cwd: repo })
    expect(outside.code).toBe(2)
    expect(outside.stderr).toContain('--workflow "../elsewhere.yml" is not a file inside')
    const twice = await runCli(['init', '--force', '--config', 'same.yml', '--workflow', 'same.yml'], { home: h, cwd: repo })
    expect(twice.code).toBe(2)
    expect(twice.stderr).toContain('--config and --workflow both name same.yml')
  })
})

describe('doctor', () => {
  it('passes on a fresh machine with the embedded local provider', async () => {
    const result = await runCli(['doctor'], { home: home() })
    expect(result.code, result.stdout + result.stderr).toBe(0)
    expect(result.stdout).toMatch(/^ok\s+provider local/m)
  })

  it('reports a group-readable config file with its fix, and other problems, exiting 1', async () => {
    const h = home()
    const file = join(h.env.XDG_CONFIG_HOME, 'crabbox', 'config.yaml')
    mkdirSync(join(file, '..'), { recursive: true })
    writeFileSync(file, 'provider: ssh\n')
    chmodSync(file, 0o640)
    const result = await runCli(['doctor'], { home: h })
    expect(result.code).toBe(1)
    expect(result.stdout).toMatch(new RegExp(`^FAIL\\s+config permissions\\s+${file} is 0640`, 'm'))
    expect(result.stdout).toContain(`fix: chmod 600 ${file}`)
    expect(result.stdout).toMatch(/^FAIL\s+provider ssh\s+no static host configured/m)
    expect(result.stderr).toContain('error: doctor found 2 problems')

    const json = await runCli(['doctor', '--json'], { home: h })
    expect(json.code).toBe(1)
    const report = JSON.parse(json.stdout)
    expect(report.ok).toBe(false)
    expect(report.checks).toContainEqual({
      name: 'config permissions',
      ok: false,
      detail: expect.stringContaining('0640'),
      fix: `chmod 600 ${file}`,
    })
  })

  it('names an unreachable broker and how to check it', async () => {
    const h = home()
    const result = await runCli(['doctor'], { home: h, env: { CRABBOX_COORDINATOR: 'http://127.0.0.1:9' } })
    expect(result.code).toBe(1)
    expect(result.stdout).toMatch(/^FAIL\s+broker\s+http:\/\/127\.0\.0\.1:9 is not healthy/m)
  })
})
