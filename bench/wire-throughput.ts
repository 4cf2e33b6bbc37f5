// Measures the wire layer over libp2p (TCP + noise + yamux, 127.0.0.1, both nodes in this process):
// moving 64 MiB of float32 as framed transfers with credit flow control, as framed transfers without
// credits, and as bare stream bytes (the transport's ceiling), plus the credit round trip with a
// window of 1. Prints the median of several runs. Not a test: figures vary ~2x with machine load, so
// compare ratios within one run.
//
//   npx tsx bench/wire-throughput.ts [--runs 5] [--mib 64]
import '../core/polyfills.ts'
import { parseArgs } from 'node:util'
import { crc32, crc32Implementation, float32Bytes, handleFramed, openFramed } from '../core/wire/index.ts'
import { createTestNode, stopNodes } from '../test/wire-helpers.ts'
import type { FlowControl } from '../core/wire/index.ts'
import type { Libp2p } from '@libp2p/interface'
import { countAndAck } from './framed-sink.ts'

const RUN = '00112233445566778899aabbccddeeff'
const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' }, mib: { type: 'string', default: '64' } } })
const RUNS = Number(values.runs)
const TOTAL = Number(values.mib) * 1024 * 1024

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const mbps = (bytes: number, ms: number): number => bytes / 1e6 / (ms / 1000)

async function framed (a: Libp2p, b: Libp2p, data: Uint8Array, frameBytes: number, flowControl: FlowControl, window: number): Promise<number> {
  const protocol = `/layerswarm/bench-wire/${flowControl}-${frameBytes}-${window}/${Math.random().toString(36).slice(2)}`
  await handleFramed(b, protocol, countAndAck, { runId: RUN, flowControl, window, limits: { maxPayloadBytes: Math.max(frameBytes, 1024) } })
  const fs = await openFramed(a, b.getMultiaddrs()[0], protocol, { runId: RUN, flowControl, window })
  const t0 = performance.now()
  const parts = Math.ceil(data.byteLength / frameBytes)
  for (let i = 0; i < parts; i++) {
    const chunk = data.subarray(i * frameBytes, Math.min((i + 1) * frameBytes, data.byteLength))
    await fs.send({ kind: 'parameter-shard', dtype: 'f32', shape: [chunk.byteLength / 4], partIndex: i, partCount: parts }, chunk)
  }
  await fs.closeWrite()
  const ack = await fs.expect()
  const ms = performance.now() - t0
  if ((ack.header.metadata as { got: number }).got !== data.byteLength) throw new Error('short transfer')
  await b.unhandle(protocol)
  return ms
}

/** Bare stream bytes: the transport's ceiling, no framing, no checks, no copies. */
async function bare (a: Libp2p, b: Libp2p, data: Uint8Array): Promise<number> {
  const protocol = `/layerswarm/bench-wire/bare/${Math.random().toString(36).slice(2)}`
  await b.handle(protocol, (stream) => {
    let got = 0
    stream.addEventListener('message', (evt) => {
      got += evt.data.byteLength
      if (got === data.byteLength) stream.send(Uint8Array.of(1))
    })
  })
  const stream = await a.dialProtocol(b.getMultiaddrs()[0], protocol)
  const done = new Promise<void>(resolve => { stream.addEventListener('message', () => { resolve() }, { once: true }) })
  const t0 = performance.now()
  const CH = 1024 * 1024
  for (let o = 0; o < data.byteLength; o += CH) {
    if (!stream.send(data.subarray(o, o + CH))) await stream.onDrain()
  }
  await done
  const ms = performance.now() - t0
  await stream.close()
  await b.unhandle(protocol)
  return ms
}

/** Frames per second when every frame waits for a fresh credit (window 1, 1 KiB frames, one way). */
async function creditRoundTrips (a: Libp2p, b: Libp2p, n: number): Promise<number> {
  const protocol = `/layerswarm/bench-wire/rtt/${Math.random().toString(36).slice(2)}`
  await handleFramed(b, protocol, async (fs) => {
    while (await fs.read() != null) { /* drain */ }
    await fs.send({ kind: 'ack' })
  }, { runId: RUN, window: 1 })
  const fs = await openFramed(a, b.getMultiaddrs()[0], protocol, { runId: RUN, window: 1 })
  const t0 = performance.now()
  for (let i = 0; i < n; i++) await fs.send({ kind: 'activation', microbatchId: i }, new Uint8Array(1024))
  await fs.closeWrite()
  await fs.expect()
  const ms = performance.now() - t0
  await b.unhandle(protocol)
  return n / (ms / 1000)
}

// Build the data before dialing: a long synchronous block right after a dial can trip the
// peer's inbound-upgrade timeout and close the fresh connection.
const data = float32Bytes(Float32Array.from({ length: TOTAL / 4 }, (_, i) => Math.sin(i)))
const [a, b] = await Promise.all([createTestNode(), createTestNode()])
try {
  await a.dial(b.getMultiaddrs()[0])
  {
    const t0 = performance.now()
    crc32(data)
    console.log(`crc32 (${crc32Implementation}) over ${TOTAL >> 20} MiB: ${mbps(TOTAL, performance.now() - t0).toFixed(0)} MB/s`)
  }
  const cases: Array<[string, () => Promise<number>]> = [
    ['bare stream bytes (ceiling)', async () => bare(a, b, data)],
    ['framed, no credit, 4 MiB frames', async () => framed(a, b, data, 4 << 20, 'none', 64)],
    ['framed, credit window 4, 4 MiB frames', async () => framed(a, b, data, 4 << 20, 'credit', 4)],
    ['framed, credit window 8, 1 MiB frames', async () => framed(a, b, data, 1 << 20, 'credit', 8)],
    ['framed, credit window 2, 1 MiB frames', async () => framed(a, b, data, 1 << 20, 'credit', 2)],
    ['framed, one 64 MiB frame', async () => framed(a, b, data, TOTAL, 'credit', 1)]
  ]
  await cases[1][1]() // warm up connections, JIT
  // Interleave the cases run by run so load changes hit them alike.
  // CPU time (both ends run in this process) is far less sensitive to other jobs than wall time.
  const times = cases.map(() => [] as number[])
  const cpu = cases.map(() => [] as number[])
  for (let r = 0; r < RUNS; r++) {
    for (let i = 0; i < cases.length; i++) {
      const c0 = process.cpuUsage()
      times[i].push(await cases[i][1]())
      const c = process.cpuUsage(c0)
      cpu[i].push((c.user + c.system) / 1000)
    }
  }
  console.log(`${TOTAL >> 20} MiB float32, noise + yamux over 127.0.0.1, one process, median of ${RUNS}:`)
  console.log(`  ${'case'.padEnd(40)} ${'wall MB/s'.padStart(9)}  ${'MB per CPU-s'.padStart(12)}  wall MB/s of each run`)
  for (let i = 0; i < cases.length; i++) {
    const med = median(times[i])
    console.log(`  ${cases[i][0].padEnd(40)} ${mbps(TOTAL, med).toFixed(0).padStart(9)}  ${mbps(TOTAL, median(cpu[i])).toFixed(0).padStart(12)}  ${times[i].map(t => mbps(TOTAL, t).toFixed(0)).join(', ')}`)
  }
  const fps = [] as number[]
  for (let r = 0; r < 3; r++) fps.push(await creditRoundTrips(a, b, 300))
  console.log(`  credit round trip (window 1, 1 KiB frames): ${median(fps).toFixed(0)} frames/s (${(1000 / median(fps)).toFixed(2)} ms per frame)`)
} finally {
  await stopNodes(a, b)
}
