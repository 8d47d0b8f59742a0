const { readFileSync, readdirSync, statSync, unlinkSync } = require('node:fs')
const { join } = require('node:path')

/**
 * `npm run build` writes oclif.manifest.json so start-up imports only the command
 * being run. A plain `tsc` rebuild does not refresh it, and a stale manifest
 * would hide new commands, so it is dropped (oclif then scans dist/commands)
 * when any command file is newer than it or a command is missing from it.
 * Returns the IDs of crabbox's own commands (`config:path`), from dist/commands.
 */
function dropStaleManifest() {
  const manifestPath = join(__dirname, '..', 'oclif.manifest.json')
  const commandsDir = join(__dirname, '..', 'dist', 'commands')
  const idOf = (file) =>
    file
      .slice(0, -3)
      .split(/[\\/]/)
      .filter((part) => part !== 'index')
      .join(':')
  let files = []
  try {
    files = readdirSync(commandsDir, { recursive: true })
      .map(String)
      .filter((file) => file.endsWith('.js'))
    const built = statSync(manifestPath).mtimeMs
    const ids = Object.keys(JSON.parse(readFileSync(manifestPath, 'utf8')).commands)
    const fresh =
      files.length === ids.length && files.every((file) => statSync(join(commandsDir, file)).mtimeMs <= built && ids.includes(idOf(file)))
    if (!fresh) unlinkSync(manifestPath)
  } catch {
    // no manifest (or it vanished meanwhile): oclif scans the commands itself
  }
  return files.map(idOf)
}

exports.dropStaleManifest = dropStaleManifest
