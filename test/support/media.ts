import { execFileSync } from 'node:child_process'

/**
 * Test videos made with ffmpeg on this machine (Debian package `ffmpeg`, which
 * `.ci/run` installs): a still grey head, a moving test pattern, a still grey
 * tail, at `fps` frames a second.
 */
export function stillMotionStill(path: string, seconds: { head: number; motion: number; tail: number }, fps = 25, size = '320x240'): void {
  const graph = [
    `color=c=gray:s=${size}:r=${fps}:d=${seconds.head}[a]`,
    `testsrc2=s=${size}:r=${fps}:d=${seconds.motion}[b]`,
    `color=c=gray:s=${size}:r=${fps}:d=${seconds.tail}[c]`,
    '[a][b][c]concat=n=3:v=1:a=0,format=yuv420p[v]',
  ].join(';')
  ffmpeg(['-filter_complex', graph, '-map', '[v]', '-c:v', 'libx264', '-preset', 'veryfast', path])
}

/** A video where nothing moves. */
export function stillVideo(path: string, seconds: number, fps = 25): void {
  ffmpeg(['-f', 'lavfi', '-i', `color=c=navy:s=320x240:r=${fps}:d=${seconds}`, '-c:v', 'libx264', '-pix_fmt', 'yuv420p', path])
}

const ffmpeg = (args: string[]) => execFileSync('ffmpeg', ['-nostdin', '-hide_banner', '-loglevel', 'error', '-y', ...args])

/** A video's duration (container) and frame count, from ffprobe. */
export function probe(path: string): { duration: number; frames: number; width: number } {
  const out = execFileSync(
    'ffprobe',
    [
      '-v',
      'error',
      '-count_frames',
      '-select_streams',
      'v:0',
      '-show_entries',
      'stream=nb_read_frames,width:format=duration',
      '-of',
      'json',
      path,
    ],
    { encoding: 'utf8' },
  )
  const parsed = JSON.parse(out) as { streams: Array<{ nb_read_frames: string; width: number }>; format: { duration: string } }
  return { duration: Number(parsed.format.duration), frames: Number(parsed.streams[0].nb_read_frames), width: parsed.streams[0].width }
}

export const hasFfmpeg = (): boolean => {
  try {
    execFileSync('ffmpeg', ['-version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}
