// Shared helpers of the node tests: temp data dirs, bounded polling, a logger that records lines.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLogger } from '../core/logger.ts'
import type { Logger } from '../core/contracts/logger.ts'

export async function tempDir (prefix = 'lsw-node-'): Promise<string> {
  return await mkdtemp(join(tmpdir(), prefix))
}

export async function removeDirs (dirs: string[]): Promise<void> {
  await Promise.all(dirs.map(async d => { await rm(d, { recursive: true, force: true }) }))
}

/** Polls `check` until it returns a value other than undefined/false; fails after `timeoutMs` with `what`. */
export async function waitFor<T> (what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  while (Date.now() < deadline) {
    try {
      const v = await check()
      if (v !== undefined && v !== false) return v
    } catch (err) {
      lastError = err
    }
    await new Promise(resolve => setTimeout(resolve, intervalMs))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError != null ? ` (last error: ${String(lastError)})` : ''}`)
}

/** A JSON logger whose lines are kept in `lines` (parsed). */
export function recordingLogger (level: 'debug' | 'info' = 'info'): { logger: Logger, lines: Array<Record<string, any>> } {
  const lines: Array<Record<string, any>> = []
  const logger = createLogger({ level, format: 'json', write: line => { lines.push(JSON.parse(line)) } })
  return { logger, lines }
}
