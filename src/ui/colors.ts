/** ANSI colours for stderr, off when NO_COLOR is set or stderr is not a TTY. */
const enabled = (): boolean => !('NO_COLOR' in process.env) && process.env.TERM !== 'dumb' && Boolean(process.stderr.isTTY)

const wrap = (open: number, close: number) => (text: string) => (enabled() ? `\u001b[${open}m${text}\u001b[${close}m` : text)

export const color = {
  dim: wrap(2, 22),
  bold: wrap(1, 22),
  red: wrap(31, 39),
  green: wrap(32, 39),
  yellow: wrap(33, 39),
  cyan: wrap(36, 39),
}
