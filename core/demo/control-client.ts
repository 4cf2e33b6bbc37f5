// Client of a node's control endpoint (HTTP + JSON on the unix socket of its data dir) for any
// method: the demo POSTs to runtime routes (e.g. /checkpoint) that `queryControl` (GET only) does
// not cover. The socket path rule is the node's own (`controlSocketPath`).
import { request } from 'node:http'
import { controlSocketPath } from '../node/control-endpoint.ts'
import { ControlEndpointError } from '../node/node-errors.ts'
import { deadline } from '../timers.ts'

export interface ControlRequestOptions {
  readonly body?: unknown
  /** Default 10 s. */
  readonly timeoutMs?: number
  readonly signal?: AbortSignal
}

/** Sends `method route` with an optional JSON body; resolves with the parsed JSON answer (200 only). */
export async function controlRequest (dataDir: string, method: 'GET' | 'POST', route: string, opts: ControlRequestOptions = {}): Promise<unknown> {
  const socketPath = controlSocketPath(dataDir)
  const guard = deadline(opts.timeoutMs ?? 10_000, opts.signal)
  const signal = guard.signal
  const payload = opts.body !== undefined ? JSON.stringify(opts.body) : undefined
  const text = await new Promise<string>((resolve, reject) => {
    const req = request({
      socketPath,
      path: route,
      method,
      signal,
      headers: payload != null ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}
    }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8')
        if (res.statusCode !== 200) reject(new ControlEndpointError(`${method} ${route} on ${socketPath} answered ${res.statusCode}: ${body}`))
        else resolve(body)
      })
      res.on('error', reject)
    })
    req.on('error', (err: Error) => {
      reject(new ControlEndpointError(`${method} ${route} on ${socketPath} failed: ${signal.aborted ? 'no answer in time' : err.message}`, { cause: err }))
    })
    req.end(payload)
  }).finally(() => { guard.clear() })
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new ControlEndpointError(`${method} ${route} on ${socketPath} sent invalid JSON`, { cause: err })
  }
}
