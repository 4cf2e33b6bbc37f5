// Local control endpoint: the running node serves JSON over HTTP on a unix domain socket in its data
// dir (mode 0600: only its user can ask). `layerswarm status` is its client. A socket left by a killed
// node is detected (lock pid gone, or connection refused) and reported as "not running".
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createHash } from 'node:crypto'
import { chmod, readFile, unlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { Logger } from '../contracts/logger.ts'
import { DATA_DIR_FILES } from './data-dir.ts'
import { isProcessAlive } from './data-dir-lock.ts'
import { ControlEndpointError, NodeNotRunningError } from './node-errors.ts'
import { LayerswarmError } from '../errors.ts'
import { deadline } from '../timers.ts'

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

/**
 * A part of the node that adds to the control endpoint (the training runtime): fields merged into
 * `GET /status`, and routes keyed `'METHOD /path'` whose handlers get the parsed JSON body (or
 * undefined) and answer a JSON value. A handler's ControlRequestError becomes a 400, anything else
 * a 500.
 */
export interface ControlExtension {
  readonly status?: () => Record<string, unknown>
  readonly routes?: Readonly<Record<string, (body: unknown) => unknown>>
}

/** A control request the handler refuses (bad body, bad state): answered 400 with its message. */
export class ControlRequestError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_CONTROL_REQUEST', message)
  }
}

// Keyed by socket path: one node per data dir (the lock), so a runtime started beside createNode()
// can extend that node's endpoint without createNode knowing about it.
const extensions = new Map<string, Set<ControlExtension>>()

/** Adds `ext` to the control endpoint of the node on `dataDir` (now or when it starts). Returns the remover. */
export function registerControlExtension (dataDir: string, ext: ControlExtension): () => void {
  const key = controlSocketPath(dataDir)
  let set = extensions.get(key)
  if (set == null) { set = new Set(); extensions.set(key, set) }
  set.add(ext)
  return () => {
    const s = extensions.get(key)
    s?.delete(ext)
    if (s?.size === 0) extensions.delete(key)
  }
}

const MAX_BODY_BYTES = 64 * 1024

/** Routes: GET /status -> status() plus extensions' fields; extensions' routes. Call only while holding the data dir lock (stale sockets are removed). */
export async function startControlServer (dataDir: string, status: () => unknown, logger: Logger): Promise<ControlServer> {
  const path = controlSocketPath(dataDir)
  const send = (res: ServerResponse, code: number, value: unknown): void => {
    const body = JSON.stringify(value)
    res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  }
  const server: Server = createServer((req, res) => {
    void (async () => {
      try {
        const exts = [...(extensions.get(path) ?? [])]
        if (req.method === 'GET' && req.url === '/status') {
          const base = status() as Record<string, unknown>
          send(res, 200, Object.assign({}, base, ...exts.map(e => e.status?.() ?? {})))
          return
        }
        const route = `${req.method ?? ''} ${req.url ?? ''}`
        const handler = exts.map(e => e.routes?.[route]).find(h => h != null)
        if (handler == null) {
          send(res, 404, { error: `no route ${req.method} ${req.url}` })
          return
        }
        const text = await readBody(req)
        let body: unknown
        if (text !== '') {
          try {
            body = JSON.parse(text)
          } catch {
            send(res, 400, { error: 'the request body is not JSON' })
            return
          }
        }
        send(res, 200, await handler(body))
      } catch (err) {
        if (err instanceof ControlRequestError) {
          send(res, 400, { error: err.message })
          return
        }
        logger.warn('control request failed', { error: String(err) })
        if (!res.headersSent) send(res, 500, { error: (err as Error)?.message ?? String(err) })
      }
    })()
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

async function readBody (req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  let n = 0
  for await (const c of req) {
    n += (c as Buffer).length
    if (n > MAX_BODY_BYTES) throw new ControlRequestError(`request body over ${MAX_BODY_BYTES} bytes`)
    chunks.push(c as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

export interface QueryOptions {
  signal?: AbortSignal
  /** Default 5000 ms. */
  timeoutMs?: number
  /** Default GET. */
  method?: 'GET' | 'POST'
  /** JSON body (POST). */
  body?: unknown
}

/** GET (or POST) a route of the node running on `dataDir`. Throws NodeNotRunningError when none runs there. */
export async function queryControl (dataDir: string, route: string, opts: QueryOptions = {}): Promise<unknown> {
  const dir = resolve(dataDir)
  const lockText = await readFile(join(dir, DATA_DIR_FILES.lock), 'utf8').catch(() => undefined)
  if (lockText == null) throw new NodeNotRunningError(dir, 'no lock file')
  const pid = Number.parseInt(lockText, 10)
  if (!Number.isInteger(pid) || !isProcessAlive(pid)) throw new NodeNotRunningError(dir, `stale lock: pid ${lockText.trim()} is gone`)

  const path = controlSocketPath(dir)
  const guard = deadline(opts.timeoutMs ?? 5000, opts.signal)
  const signal = guard.signal
  const body = await new Promise<string>((resolve, reject) => {
    const payload = opts.body !== undefined ? JSON.stringify(opts.body) : undefined
    const headers = payload != null ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : undefined
    const req = request({ socketPath: path, path: route, method: opts.method ?? 'GET', signal, headers }, res => {
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
    req.end(payload)
  }).finally(() => { guard.clear() })
  try {
    return JSON.parse(body)
  } catch (err) {
    throw new ControlEndpointError(`control endpoint ${path} sent invalid JSON`, { cause: err })
  }
}
