import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { isMap, parseDocument, type Document } from 'yaml'
import { CrabboxError } from '../errors.js'
import { userConfigPath } from '../paths.js'

/**
 * Writes a file only its owner can read: 0600 in a 0700 folder, replaced
 * atomically so a crash never leaves half a config (or half a key) behind.
 */
async function writePrivateFile(path: string, contents: string, privateFolder = true): Promise<void> {
  const dir = dirname(path)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  // The repo file sits at the git root: that folder keeps its own mode.
  if (privateFolder) await chmod(dir, 0o700)
  const temp = `${path}.${process.pid}.tmp`
  await writeFile(temp, contents, { mode: 0o600 })
  await chmod(temp, 0o600)
  await rename(temp, path)
}

/**
 * Edits the user config file (`CRABBOX_CONFIG`, else the XDG one) in place:
 * the mutator gets the parsed YAML document, so other keys and comments
 * survive. Returns the path written.
 */
export async function updateUserConfig(
  mutator: (doc: Document) => void,
  path = userConfigPath(),
  options: { privateFolder?: boolean } = {},
): Promise<string> {
  let text = ''
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  const doc = parseDocument(text)
  if (doc.errors.length > 0 || (doc.contents !== null && !isMap(doc.contents))) {
    throw new CrabboxError(`cannot update ${path}: it is not a valid YAML mapping`, {
      exit: 'usage',
      hint: `Fix or remove ${path}, then retry.`,
    })
  }
  if (doc.contents === null) doc.contents = doc.createNode({}) as unknown as typeof doc.contents
  mutator(doc)
  await writePrivateFile(path, doc.toString(), options.privateFolder ?? true)
  return path
}

/**
 * The typed shortcut most callers want: dotted config paths to set, with
 * `undefined` deleting the key (and an emptied section). For example
 * `setUserConfigValues({ 'broker.url': url, 'broker.token': token })`.
 */
export async function setUserConfigValues(
  values: Record<string, unknown>,
  path?: string,
  options: { privateFolder?: boolean } = {},
): Promise<string> {
  return updateUserConfig(
    (doc) => {
      for (const [key, value] of Object.entries(values)) {
        const keys = key.split('.')
        if (value === undefined) {
          doc.deleteIn(keys)
          const parent = keys.slice(0, -1)
          const section = parent.length > 0 ? doc.getIn(parent) : undefined
          if (isMap(section) && section.items.length === 0) doc.deleteIn(parent)
        } else {
          doc.setIn(keys, value)
        }
      }
    },
    path,
    options,
  )
}

/** The value at a dotted path of a config file, `undefined` when the file or the key is missing. */
export async function readConfigValue(path: string, key: string): Promise<unknown> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
  const value = parseDocument(text).getIn(key.split('.'))
  return value && typeof value === 'object' && 'toJSON' in value ? (value as { toJSON(): unknown }).toJSON() : value
}
