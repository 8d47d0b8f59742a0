import { readFileSync, readdirSync, statSync, unlinkSync } from 'node:fs'

/**
 * `npm run build` writes oclif.manifest.json so start-up imports only the command
 * being run. A plain `tsc` rebuild does not refresh it, and a stale manifest
 * would hide new commands, so it is dropped (oclif then scans dist/commands)
 * when any command file is newer than it or a command is missing from it.
 * Returns the IDs of crabbox's own commands (`config:path`), from dist/commands.
 */
export function dropStaleManifest() {
  const manifestUrl = new URL('../oclif.manifest.json', import.meta.url)
  const commandsUrl = new URL('../dist/commands/', import.meta.url)
  const idOf = (file) =>
    file
      .slice(0, -3)
      .split(/[\\/]/)
      .filter((part) => part !== 'index')
      .join(':')
  let files = []
  try {
    files = readdirSync(commandsUrl, { recursive: true })
      .map(String)
      .filter((file) => file.endsWith('.js'))
    const built = statSync(manifestUrl).mtimeMs
    const ids = Object.keys(JSON.parse(readFileSync(manifestUrl, 'utf8')).commands)
    const fresh =
      files.length === ids.length &&
      files.every((file) => statSync(new URL(file, commandsUrl)).mtimeMs <= built && ids.includes(idOf(file)))
    if (!fresh) unlinkSync(manifestUrl)
  } catch {
    // no manifest (or it vanished meanwhile): oclif scans the commands itself
  }
  return files.map(idOf)
}
