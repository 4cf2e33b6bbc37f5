// The dashboard's web server (node:http, no framework): the page, its script and styles, uPlot from
// node_modules (no CDN: works offline), `GET /api/snapshot` (JSON) and `GET /events` (server-sent
// events: one `snapshot` event per tick). One timer builds the snapshot every tick whether or not a
// page is open, so the history behind the curves keeps growing; every client gets that one copy.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { readFile } from 'node:fs/promises'
import type { Logger } from '../contracts/logger.ts'
import { silentLogger } from '../logger.ts'
import { DashboardListenError, isLoopbackHost } from './address.ts'
import { dashboardAssets, type Asset } from './assets.ts'
import type { DashboardSnapshot } from './snapshot.ts'

export interface DashboardOptions {
  /** Default 127.0.0.1. */
  readonly host?: string
  /** Default 7070; 0: any free port. */
  readonly port?: number
  /** Builds the snapshot (nodeSnapshotSource(node, ...) for a running node); called once per tick. */
  readonly snapshot: () => DashboardSnapshot
  /** Tick period (default 1000 ms). */
  readonly intervalMs?: number
  /** Open /events streams at most (default 32): a page beyond them gets a 503. */
  readonly maxClients?: number
  readonly log?: Logger
  /** Aborting it closes the dashboard. */
  readonly signal?: AbortSignal
}

export interface Dashboard {
  /** http://HOST:PORT/ with the port actually bound. */
  readonly url: string
  readonly host: string
  readonly port: number
  /** Idempotent: ends the event streams, stops the timer, closes the listener. */
  close(): Promise<void>
}

/** A client that has this much unsent data is too slow for the stream and is dropped (it reconnects). */
const MAX_BUFFERED = 1 << 20

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  // the page's own files only: no inline script, nothing fetched from elsewhere
  'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'"
}

export async function startDashboard (opts: DashboardOptions): Promise<Dashboard> {
  const log = (opts.log ?? silentLogger).forComponent('layerswarm:dashboard')
  const host = opts.host ?? '127.0.0.1'
  const intervalMs = opts.intervalMs ?? 1000
  const maxClients = opts.maxClients ?? 32
  if (opts.signal?.aborted === true) throw new DashboardListenError('the dashboard was aborted before it started')
  const assets = await dashboardAssets()
  const clients = new Set<ServerResponse>()
  let last: string | undefined
  let failing = false

  const tick = (): void => {
    try {
      last = JSON.stringify(opts.snapshot())
      if (failing) log.info('dashboard snapshot works again')
      failing = false
    } catch (err) {
      // a snapshot that throws (a runtime between stages) keeps the last one: logged once per streak
      if (!failing) log.warn('building the dashboard snapshot failed', { error: (err as Error)?.message ?? String(err) })
      failing = true
      return
    }
    const frame = `event: snapshot\ndata: ${last}\n\n`
    for (const res of clients) {
      if (res.writableLength > MAX_BUFFERED) { res.destroy(); clients.delete(res); continue }
      res.write(frame)
    }
  }
  const current = (): string => {
    if (last == null) tick()
    return last ?? 'null'
  }

  // a loopback dashboard answers only requests addressed to loopback: a web page elsewhere cannot
  // reach it through a DNS name rebound to 127.0.0.1
  const hostAllowed = (req: IncomingMessage): boolean => {
    if (!isLoopbackHost(host)) return true
    const h = req.headers.host ?? ''
    const name = h.startsWith('[') ? h.slice(1, h.indexOf(']')) : h.replace(/:\d+$/, '')
    return isLoopbackHost(name)
  }

  const server: Server = createServer((req, res) => {
    void (async () => {
      try {
        if (!hostAllowed(req)) { plain(res, 421, 'misdirected request: this dashboard answers loopback host names only'); return }
        if (req.method !== 'GET' && req.method !== 'HEAD') { plain(res, 405, 'only GET'); return }
        const path = (req.url ?? '/').split('?')[0]
        if (path === '/api/snapshot') {
          const body = current()
          res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) })
          res.end(req.method === 'HEAD' ? undefined : body)
          return
        }
        if (path === '/events') { openStream(req, res); return }
        const asset = assets.get(path)
        if (asset == null) { plain(res, 404, `no page at ${path}`); return }
        await sendAsset(req, res, asset)
      } catch (err) {
        log.warn('dashboard request failed', { error: (err as Error)?.message ?? String(err) })
        if (!res.headersSent) plain(res, 500, 'internal error')
        else res.destroy()
      }
    })()
  })

  const openStream = (req: IncomingMessage, res: ServerResponse): void => {
    if (clients.size >= maxClients) { plain(res, 503, `at most ${maxClients} open dashboards`); return }
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive' })
    // the browser reconnects after `retry` ms when the stream breaks
    res.write(`retry: ${Math.max(1000, intervalMs)}\nevent: snapshot\ndata: ${current()}\n\n`)
    clients.add(res)
    const drop = (): void => { clients.delete(res) }
    req.on('close', drop)
    res.on('error', drop)
  }

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const why = err.code === 'EADDRINUSE'
        ? `port ${opts.port ?? 7070} on ${host} is in use: pick another with --dashboard HOST:PORT`
        : err.code === 'EADDRNOTAVAIL' ? `${host} is not an address of this machine` : err.message
      reject(new DashboardListenError(`the dashboard cannot listen on ${host}:${opts.port ?? 7070}: ${why}`, { cause: err }))
    }
    server.once('error', onError)
    server.listen(opts.port ?? 7070, host, () => { server.off('error', onError); resolve() })
  })
  server.on('error', err => { log.warn('dashboard server error', { error: err.message }) })
  const address = server.address()
  const port = typeof address === 'object' && address != null ? address.port : (opts.port ?? 7070)
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}/`

  tick()
  const timer = setInterval(tick, intervalMs)
  timer.unref()
  let closing: Promise<void> | undefined
  const close = async (): Promise<void> => {
    closing ??= (async () => {
      clearInterval(timer)
      opts.signal?.removeEventListener('abort', onAbort)
      for (const res of clients) res.end()
      clients.clear()
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => { resolve() }))
      log.debug('dashboard closed', { url })
    })()
    await closing
  }
  const onAbort = (): void => { void close() }
  opts.signal?.addEventListener('abort', onAbort, { once: true })
  // (it may have fired while the listener was binding: TS narrowed `aborted` at the first check)
  if ((opts.signal as AbortSignal | undefined)?.aborted === true) { await close(); throw new DashboardListenError('the dashboard was aborted while it started') }
  log.info('dashboard listening', { url })
  return { url, host, port, close }
}

function plain (res: ServerResponse, code: number, text: string): void {
  res.writeHead(code, { ...SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

async function sendAsset (req: IncomingMessage, res: ServerResponse, asset: Asset): Promise<void> {
  const body = await readFile(asset.file)
  res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': asset.type, 'cache-control': 'no-cache', 'content-length': body.length })
  res.end(req.method === 'HEAD' ? undefined : body)
}
