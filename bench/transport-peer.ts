// The receiving end of `layerswarm bench transport` (bench/transport.ts), in its own process so
// that sender and receiver each have their own thread, as two nodes of a swarm do. It listens on
// 127.0.0.1 with a raw `node:net` server and one libp2p node (TCP + yamux) per connection
// encrypter, and receives every transfer into memory before acknowledging it.
//
//   argv[2]: JSON {bytes}: the size of one transfer
//   stdout:  {"event":"ready","raw":PORT,"nodes":{"noise":ADDR,"tls":ADDR,"plaintext":ADDR}}, then one reply per command
//   stdin:   {"cmd":"cpu"} -> {"event":"cpu","user","system"} (microseconds, process.cpuUsage())
//            {"cmd":"exit"}
import '../core/polyfills.ts'
import net from 'node:net'
import { createInterface } from 'node:readline'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { noise } from '@chainsafe/libp2p-noise'
import { tls } from '@libp2p/tls'
import { plaintext } from '@libp2p/plaintext'
import { handleFramed } from '../core/wire/index.ts'
import type { ConnectionEncrypter, Libp2p } from '@libp2p/interface'
import { countAndAck } from './framed-sink.ts'

export const TRANSPORT_RUN_ID = '7472616e73706f72742d62656e636821'
export const FRAMED_PROTOCOL = '/layerswarm/bench/transport/framed/1.0.0'
export const BARE_PROTOCOL = '/layerswarm/bench/transport/bare/1.0.0'
/** The receiver's acknowledgement of a whole transfer (raw and bare cases). */
export const ACK = Uint8Array.of(0x61)

export type EncrypterName = 'noise' | 'tls' | 'plaintext'
export const ENCRYPTERS: EncrypterName[] = ['noise', 'tls', 'plaintext']

/** One encrypter, for the bench's single-encrypter nodes (plaintext: the bench's unencrypted row only). */
export function encrypterOf (name: EncrypterName): (components: any) => ConnectionEncrypter {
  return name === 'noise' ? noise() : name === 'tls' ? tls() : plaintext()
}

/** A libp2p node like a layerswarm node's transport (TCP, yamux) with exactly one encrypter. */
export async function createBenchNode (enc: EncrypterName): Promise<Libp2p> {
  return await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [encrypterOf(enc)],
    streamMuxers: [yamux()],
    // the node's own setting (core/node/create-node.ts): a busy machine answers pings late
    connectionMonitor: { pingTimeout: { minTimeout: 30_000, maxTimeout: 120_000 } }
  })
}

/** Raw TCP receiver: every connection brings `bytes` bytes, copied into one buffer, then a 1-byte ack. */
function rawServer (bytes: number): net.Server {
  return net.createServer(socket => {
    const buf = new Uint8Array(bytes)
    let got = 0
    socket.on('data', (d: Buffer) => {
      if (got + d.byteLength > bytes) { socket.destroy(new Error('more bytes than announced')); return }
      buf.set(d, got)
      got += d.byteLength
      if (got === bytes) socket.end(ACK)
    })
    socket.on('error', () => {})
  })
}

/** Bare libp2p stream bytes: the same receiver as rawServer, no framing. */
async function handleBare (node: Libp2p, bytes: number): Promise<void> {
  await node.handle(BARE_PROTOCOL, (stream) => {
    const buf = new Uint8Array(bytes)
    let got = 0
    stream.addEventListener('message', (evt) => {
      const chunks = evt.data instanceof Uint8Array ? [evt.data] : [...evt.data]
      for (const c of chunks) {
        if (got + c.byteLength > bytes) { stream.abort(new Error('more bytes than announced')); return }
        buf.set(c, got)
        got += c.byteLength
      }
      if (got === bytes) {
        stream.send(ACK)
        void stream.close().catch(() => {})
      }
    })
  })
}

/** The project's framed protocol with the pipeline's defaults (window, chunk size, 64 MiB frames). */
async function handleFramedSink (node: Libp2p): Promise<void> {
  await handleFramed(node, FRAMED_PROTOCOL, countAndAck, { runId: TRANSPORT_RUN_ID, timeoutMs: 300_000 })
}

async function main (): Promise<void> {
  const cfg = JSON.parse(process.argv[2]) as { bytes: number }
  if (!Number.isSafeInteger(cfg.bytes) || cfg.bytes < 1) throw new Error(`bad bytes ${String(cfg.bytes)}`)
  const server = rawServer(cfg.bytes)
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', resolve) })
  const nodes: Partial<Record<EncrypterName, Libp2p>> = {}
  const addrs: Record<string, string> = {}
  for (const enc of ENCRYPTERS) {
    const node = await createBenchNode(enc)
    nodes[enc] = node
    await handleFramedSink(node)
    await handleBare(node, cfg.bytes)
    addrs[enc] = node.getMultiaddrs()[0].toString()
  }
  const reply = (msg: Record<string, unknown>): void => { process.stdout.write(JSON.stringify(msg) + '\n') }
  reply({ event: 'ready', raw: (server.address() as net.AddressInfo).port, nodes: addrs })
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() === '') continue
    const cmd = JSON.parse(line) as { cmd: string }
    if (cmd.cmd === 'cpu') reply({ event: 'cpu', ...process.cpuUsage() })
    else if (cmd.cmd === 'exit') break
    else reply({ event: 'error', message: `unknown command ${cmd.cmd}` })
  }
  server.close()
  await Promise.all(Object.values(nodes).map(async n => { await n.stop() }))
  process.exit(0)
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch(err => { process.stderr.write(`transport peer failed: ${(err as Error).stack ?? String(err)}\n`); process.exit(1) })
}
