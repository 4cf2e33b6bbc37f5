// One node per data dir: a lock file (created with O_EXCL) holding the owner's pid. A lock left by a
// killed node is stale (its pid is gone) and is taken over.
import { open, readFile, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { DATA_DIR_FILES } from './data-dir.ts'
import { DataDirError, DataDirLockedError } from './node-errors.ts'

export interface DataDirLock {
  readonly file: string
  release(): Promise<void>
}

// locks this process holds: a lock file with our own pid that is not in here is stale (pid reuse)
const held = new Set<string>()

export function isProcessAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err: any) {
    return err?.code === 'EPERM'
  }
}

export async function lockDataDir (dir: string): Promise<DataDirLock> {
  const file = join(dir, DATA_DIR_FILES.lock)
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(file, 'wx', 0o600)
      try {
        await fh.writeFile(`${process.pid}\n`)
      } finally {
        await fh.close()
      }
      held.add(file)
      let released = false
      return {
        file,
        release: async () => {
          if (released) return
          released = true
          held.delete(file)
          await unlink(file).catch(() => {})
        }
      }
    } catch (err: any) {
      if (err?.code !== 'EEXIST') throw new DataDirError(dir, `cannot create the lock file ${file}: ${err?.message}`, { cause: err })
    }
    const pid = Number.parseInt(await readFile(file, 'utf8').catch(() => ''), 10)
    const live = Number.isInteger(pid) && pid > 0 && isProcessAlive(pid) && (pid !== process.pid || held.has(file))
    if (live) throw new DataDirLockedError(dir, pid)
    await unlink(file).catch(() => {}) // stale: its node died without cleaning up
  }
  throw new DataDirLockedError(dir, -1)
}
