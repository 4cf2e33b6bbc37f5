// Files written so that a crash never leaves a half-written one behind (checkpoints, reports, the
// demo's outputs): the bytes go to a temp file beside the target, are synced, then renamed over it.
import { randomBytes } from 'node:crypto'
import { link, open, rename, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'

export interface AtomicWriteOptions {
  /** File mode from the first byte (default: the umask's). */
  readonly mode?: number
  /** Refuse to replace an existing file (EEXIST): the temp file is linked into place, not renamed. */
  readonly exclusive?: boolean
}

/** Write to a temp file in the same directory, fsync, rename (or link) over `path`, fsync the directory. */
export async function writeFileAtomic (path: string, bytes: Uint8Array | string, options: AtomicWriteOptions = {}): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`)
  const fh = await open(tmp, 'wx', options.mode)
  try {
    await fh.writeFile(bytes)
    await fh.sync()
  } catch (err) {
    await fh.close()
    await unlink(tmp).catch(() => {})
    throw err
  }
  await fh.close()
  try {
    if (options.exclusive === true) {
      // link fails when the target exists, also when a concurrent writer got there first
      await link(tmp, path)
      await unlink(tmp)
    } else {
      await rename(tmp, path)
    }
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
  const dir = await open(dirname(path), 'r')
  try {
    await dir.sync()
  } finally {
    await dir.close()
  }
}
