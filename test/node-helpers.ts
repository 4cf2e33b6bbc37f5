// Shared helpers of the node tests: temp data dirs and a logger that records lines (waiting: wait-helpers.ts).
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer } from 'node:net'
import { createLogger } from '../core/logger.ts'
import type { Logger } from '../core/contracts/logger.ts'
import type { LayerswarmNode } from '../core/index.ts'

export async function tempDir (prefix = 'lsw-node-'): Promise<string> {
  return await mkdtemp(join(tmpdir(), prefix))
}

export async function removeDirs (dirs: string[]): Promise<void> {
  await Promise.all(dirs.map(async d => { await rm(d, { recursive: true, force: true }) }))
}

/**
 * A suite's nodes and temp data dirs (call inside `describe`): a test pushes what it starts to `nodes`;
 * after the suite every node is stopped and every dir removed. `dataDir()`: a new dir, removed then.
 */
export function nodeSuite (): { nodes: LayerswarmNode[], dirs: string[], dataDir: () => Promise<string> } {
  const dirs: string[] = []
  const nodes: LayerswarmNode[] = []
  after(async () => {
    await Promise.all(nodes.map(async n => { await n.stop() }))
    await removeDirs(dirs)
  })
  return { nodes, dirs, dataDir: async () => { const d = await tempDir(); dirs.push(d); return d } }
}

/** A JSON logger whose lines are kept in `lines` (parsed). */
export function recordingLogger (level: 'debug' | 'info' = 'info'): { logger: Logger, lines: Array<Record<string, any>> } {
  const lines: Array<Record<string, any>> = []
  const logger = createLogger({ level, format: 'json', write: line => { lines.push(JSON.parse(line)) } })
  return { logger, lines }
}

/** A TCP port on 127.0.0.1 that was free a moment ago (for a node that must come up on a known address later). */
export async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  await new Promise<void>(resolve => server.close(() => { resolve() }))
  return port
}
