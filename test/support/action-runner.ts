import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse } from 'yaml'

interface ActionStep {
  name: string
  id?: string
  if?: string
  shell: string
  run: string
  env?: Record<string, string>
}

interface ActionFile {
  inputs: Record<string, { required?: boolean; default?: string }>
  outputs: Record<string, { value: string }>
  runs: { using: string; steps: ActionStep[] }
}

export interface StepRun {
  name: string
  /** null when the step was skipped. */
  code: number | null
  log: string
}

export interface ActionRun {
  steps: StepRun[]
  /** The whole job log, as the runner shows it. */
  log: string
  /** The job summary file's text. */
  summary: string
  outputs: Record<string, string>
}

/**
 * Runs a composite action.yml as the GitHub runner does, for the parts it uses: each `run`
 * step with `bash --noprofile --norc -eo pipefail`, `${{ inputs.* }}`, `${{ steps.*.outputs.* }}`
 * and `${{ github.action_path }}` substituted, the step's `env`, GITHUB_ACTION_PATH,
 * GITHUB_OUTPUT/GITHUB_PATH/GITHUB_STEP_SUMMARY files (a later step's PATH gets the
 * GITHUB_PATH lines), steps after a failure skipped unless `if: always()`.
 */
export async function runAction(
  actionDir: string,
  options: { inputs: Record<string, string>; env: Record<string, string | undefined>; workspace: string },
): Promise<ActionRun> {
  const action = parse(readFileSync(join(actionDir, 'action.yml'), 'utf8')) as ActionFile
  if (action.runs.using !== 'composite') throw new Error(`not a composite action: ${action.runs.using}`)
  const files = mkdtempSync(join(tmpdir(), 'crabbox-action-runner-'))
  const summary = join(files, 'step_summary.md')
  const pathFile = join(files, 'path')
  writeFileSync(summary, '')
  writeFileSync(pathFile, '')
  const inputs: Record<string, string> = {}
  for (const [name, spec] of Object.entries(action.inputs)) {
    const value = options.inputs[name] ?? spec.default ?? ''
    if (spec.required && !value) throw new Error(`input ${name} is required`)
    inputs[name] = value
  }
  const stepOutputs: Record<string, Record<string, string>> = {}
  const expand = (text: string) =>
    text.replace(/\$\{\{\s*([^}]+?)\s*\}\}/g, (_, expr: string) => {
      const input = /^inputs\.([\w-]+)$/.exec(expr)
      if (input) return inputs[input[1]] ?? ''
      const output = /^steps\.([\w-]+)\.outputs\.([\w-]+)$/.exec(expr)
      if (output) return stepOutputs[output[1]]?.[output[2]] ?? ''
      if (expr === 'github.action_path') return actionDir
      throw new Error(`expression not understood by the test runner: ${expr}`)
    })

  const steps: StepRun[] = []
  let failed = false
  let log = ''
  for (const [index, step] of action.runs.steps.entries()) {
    if (failed && step.if?.trim() !== 'always()') {
      steps.push({ name: step.name, code: null, log: '' })
      continue
    }
    if (step.shell !== 'bash') throw new Error(`step ${step.name}: shell ${step.shell}`)
    const script = join(files, `step-${index}.sh`)
    const outputFile = join(files, `output-${index}`)
    writeFileSync(script, expand(step.run))
    writeFileSync(outputFile, '')
    const added = readFileSync(pathFile, 'utf8').split('\n').filter(Boolean).reverse()
    const env: Record<string, string | undefined> = {
      ...options.env,
      ...Object.fromEntries(Object.entries(step.env ?? {}).map(([key, value]) => [key, expand(String(value))])),
      GITHUB_ACTIONS: 'true',
      CI: 'true',
      GITHUB_ACTION_PATH: actionDir,
      GITHUB_WORKSPACE: options.workspace,
      GITHUB_OUTPUT: outputFile,
      GITHUB_PATH: pathFile,
      GITHUB_STEP_SUMMARY: summary,
      PATH: [...added, options.env.PATH ?? process.env.PATH].join(':'),
    }
    for (const key of Object.keys(env)) if (env[key] === undefined) delete env[key]
    const { code, output } = await runStep(script, options.workspace, env as NodeJS.ProcessEnv)
    log += `##[step] ${step.name}\n${output}`
    steps.push({ name: step.name, code, log: output })
    if (step.id) stepOutputs[step.id] = parseOutputs(readFileSync(outputFile, 'utf8'))
    if (code !== 0) failed = true
  }
  const outputs = Object.fromEntries(Object.entries(action.outputs).map(([name, spec]) => [name, expand(spec.value)]))
  return { steps, log, summary: existsSync(summary) ? readFileSync(summary, 'utf8') : '', outputs }
}

function parseOutputs(text: string): Record<string, string> {
  const outputs: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const at = line.indexOf('=')
    if (at > 0) outputs[line.slice(0, at)] = line.slice(at + 1)
  }
  return outputs
}

function runStep(script: string, cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    // One stream, in order, as the job log shows stdout and stderr.
    const child = spawn('/bin/bash', ['--noprofile', '--norc', '-eo', 'pipefail', script], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000)
    child.once('error', reject)
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, output })
    })
  })
}
