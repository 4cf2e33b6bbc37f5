// Files written so that a crash never leaves a half-written one behind (checkpoints, reports, the
// demo's outputs): the bytes go to a temp file beside the target, are synced, then renamed over it.
import { randomBytes } from 'node:crypto'
import { open, rename, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'

/** Write to a temp file in the same directory, fsync, rename over `path`, fsync the directory. */
export async function writeFileAtomic (path: string, bytes: Uint8Array): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`)
  const fh = await open(tmp, 'wx')
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
    await rename(tmp, path)
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
