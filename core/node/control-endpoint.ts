// Local control endpoint: the running node serves JSON over HTTP on a unix domain socket in its data
// dir (mode 0600: only its user can ask). `layerswarm status` is its client. A socket left by a killed
// node is detected (lock pid gone, or connection refused) and reported as "not running".
import { createServer, request, type Server } from 'node:http'
import { createHash } from 'node:crypto'
import { chmod, readFile, unlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { Logger } from '../contracts/logger.ts'
import { DATA_DIR_FILES } from './data-dir.ts'
import { isProcessAlive } from './data-dir-lock.ts'
import { ControlEndpointError, NodeNotRunningError } from './node-errors.ts'

// sun_path holds 108 bytes on Linux (104 on macOS): a deep data dir gets a socket in tmpdir named by
// the dir's hash, so server and client agree without reading any file
const MAX_SOCKET_PATH = 100

export function controlSocketPath (dataDir: string): string {
  const abs = resolve(dataDir)
  const inDir = join(abs, DATA_DIR_FILES.socket)
  if (Buffer.byteLength(inDir) <= MAX_SOCKET_PATH) return inDir
  return join(tmpdir(), `layerswarm-${createHash('sha256').update(abs).digest('hex').slice(0, 16)}.sock`)
}

export interface ControlServer {
  readonly path: string
  close(): Promise<void>
}

/** Routes: GET /status -> status(). Call only while holding the data dir lock (stale sockets are removed). */
export async function startControlServer (dataDir: string, status: () => unknown, logger: Logger): Promise<ControlServer> {
  const path = controlSocketPath(dataDir)
  const server: Server = createServer((req, res) => {
    try {
      if (req.method === 'GET' && req.url === '/status') {
        const body = JSON.stringify(status())
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
        res.end(body)
      } else {
        res.writeHead(404, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ error: `no route ${req.method} ${req.url}` }))
      }
    } catch (err) {
      logger.warn('control request failed', { error: String(err) })
      res.writeHead(500).end()
    }
  })
  await unlink(path).catch(() => {}) // stale socket of a killed node: we hold the lock
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(path, () => { server.off('error', reject); resolve() })
  })
  await chmod(path, 0o600)
  logger.debug('control endpoint listening', { path })
  return {
    path,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => { resolve() }))
      await unlink(path).catch(() => {})
    }
  }
}

export interface QueryOptions {
  signal?: AbortSignal
  /** Default 5000 ms. */
  timeoutMs?: number
}

/** GET a route of the node running on `dataDir`. Throws NodeNotRunningError when none runs there. */
export async function queryControl (dataDir: string, route: string, opts: QueryOptions = {}): Promise<unknown> {
  const dir = resolve(dataDir)
  const lockText = await readFile(join(dir, DATA_DIR_FILES.lock), 'utf8').catch(() => undefined)
  if (lockText == null) throw new NodeNotRunningError(dir, 'no lock file')
  const pid = Number.parseInt(lockText, 10)
  if (!Number.isInteger(pid) || !isProcessAlive(pid)) throw new NodeNotRunningError(dir, `stale lock: pid ${lockText.trim()} is gone`)

  const path = controlSocketPath(dir)
  const signal = AbortSignal.any([AbortSignal.timeout(opts.timeoutMs ?? 5000), ...(opts.signal != null ? [opts.signal] : [])])
  const body = await new Promise<string>((resolve, reject) => {
    const req = request({ socketPath: path, path: route, method: 'GET', signal }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        if (res.statusCode !== 200) reject(new ControlEndpointError(`control endpoint ${path} answered ${res.statusCode}: ${text}`))
        else resolve(text)
      })
      res.on('error', reject)
    })
    req.on('error', (err: any) => {
      if (err?.code === 'ENOENT' || err?.code === 'ECONNREFUSED') {
        reject(new NodeNotRunningError(dir, `control socket ${path} ${err.code === 'ENOENT' ? 'is missing' : 'refuses connections'}`, { cause: err }))
      } else if (err?.name === 'AbortError' || signal.aborted) {
        reject(new ControlEndpointError(`control endpoint ${path} did not answer in time`, { cause: err }))
      } else {
        reject(new ControlEndpointError(`control endpoint ${path}: ${err?.message}`, { cause: err }))
      }
    })
    req.end()
  })
  try {
    return JSON.parse(body)
  } catch (err) {
    throw new ControlEndpointError(`control endpoint ${path} sent invalid JSON`, { cause: err })
  }
}
