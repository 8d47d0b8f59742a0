import { spawn } from 'node:child_process'
import { CrabboxError } from '../../errors.js'

/**
 * Runs this machine's ffmpeg and ffprobe. A missing binary is exit 5 (the
 * machine lacks a capability) with the command that installs it; a failed run
 * is exit 1 with ffmpeg's own last lines.
 */

export const INSTALL_FFMPEG =
  'Install ffmpeg (it brings ffprobe): sudo apt-get install -y ffmpeg on Debian/Ubuntu, brew install ffmpeg on macOS.'

export interface ToolOutput {
  stdout: string
  stderr: string
}

export function runTool(tool: 'ffmpeg' | 'ffprobe', args: string[]): Promise<ToolOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(tool, tool === 'ffmpeg' ? ['-nostdin', '-hide_banner', ...args] : args, {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk))
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk))
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT')
        reject(
          new CrabboxError(`${tool} is not installed on this machine`, {
            exit: 'provisioning',
            code: 'ffmpeg_missing',
            hint: INSTALL_FFMPEG,
          }),
        )
      else reject(error)
    })
    child.on('close', (code) => {
      const stdout = Buffer.concat(out).toString('utf8')
      const stderr = Buffer.concat(err).toString('utf8')
      if (code === 0) return resolve({ stdout, stderr })
      const tail = stderr.trim().split('\n').slice(-3).join(' | ')
      reject(new CrabboxError(`${tool} failed (exit ${code}): ${tail || 'no output'}`, { code: 'ffmpeg_failed' }))
    })
  })
}

/** The length of a video in seconds, from its container (ffprobe). */
export async function probeDuration(input: string): Promise<number> {
  const { stdout } = await runTool('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'default=nw=1:nk=1', input])
  const seconds = Number.parseFloat(stdout.trim())
  if (!Number.isFinite(seconds) || seconds <= 0)
    throw new CrabboxError(`${input} has no video duration (ffprobe said ${JSON.stringify(stdout.trim())})`, { code: 'media_invalid' })
  return seconds
}
