// The node's data dir: created mode 0700 if absent. Holds the identity key, the lock file and the
// control socket (see identity.ts, data-dir-lock.ts, control-server.ts).
import { mkdir, stat, chmod } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { DataDirError } from './node-errors.ts'

export const DATA_DIR_FILES = {
  identity: 'identity.key',
  lock: 'node.lock',
  socket: 'control.sock',
  info: 'node.json'
} as const

export function defaultDataDir (): string {
  return join(homedir(), '.layerswarm')
}

/** Creates the dir (0700, parents too) or checks the existing one is a directory. Returns its absolute path. */
export async function ensureDataDir (dir: string): Promise<string> {
  const abs = resolve(dir)
  try {
    await mkdir(abs, { recursive: true, mode: 0o700 })
    const st = await stat(abs)
    if (!st.isDirectory()) throw new DataDirError(abs, 'it is not a directory')
    // a dir made by someone else may be group/world readable; the key inside must not leak
    if ((st.mode & 0o077) !== 0 && st.uid === process.getuid?.()) await chmod(abs, 0o700)
  } catch (err: any) {
    if (err instanceof DataDirError) throw err
    throw new DataDirError(abs, err?.code === 'EEXIST' || err?.code === 'ENOTDIR' ? 'a file is in the way' : String(err?.message ?? err), { cause: err })
  }
  return abs
}
