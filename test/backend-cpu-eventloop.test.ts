// Heavy compute on the CPU backend must not block the node's event loop: while long matmuls run on
// the worker threads, a setInterval keeps ticking and a real libp2p ping (TCP + noise + yamux on
// 127.0.0.1) between two nodes in this process gets answered. The verdict is the event loop's
// utilization over the compute (performance.eventLoopUtilization: the share of time spent running
// callbacks): it does not count time the OS gave to other processes, so a loaded machine does not
// change it (wall-clock gaps did: a soak with other work running saw a 293 ms gap beside a 359 ms
// call). Gaps and ping round trips are printed for the record. The inline control (threads: 0) shows
// the same measurement does see a blocked loop.
import '../core/polyfills.ts'
import assert from 'node:assert/strict'
import { noise } from '@chainsafe/libp2p-noise'
import { ping } from '@libp2p/ping'
import type { Ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from '@libp2p/interface'
import type { ComputeBackend, Tensor } from '../core/contracts/index.ts'
import { createCpuBackend } from '../plugins/backend-cpu/backend.ts'

type PingNode = Libp2p<{ ping: Ping }>

async function pingNode (): Promise<PingNode> {
  return await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // a finished ping's stream may close after the next ping starts on a loaded machine
    services: { ping: ping({ maxOutboundStreams: 4 }) }
  })
}

interface LoopStats { callsMs: number[], maxGapMs: number, ticks: number, utilization: number }

/** Runs `calls` matmuls of n^3 back to back while a 5 ms interval records its largest gap. */
async function matmulsWhileTicking (be: ComputeBackend, n: number, calls: number, during?: () => Promise<void>): Promise<LoopStats & { duringDone: boolean }> {
  const fill = (seed: number): Float32Array => Float32Array.from({ length: n * n }, (_, i) => ((i * 2654435761 + seed) % 1000) / 1000 - 0.5)
  const a: Tensor = be.upload(fill(1), [n, n])
  const w: Tensor = be.upload(fill(2), [n, n])
  const out: Tensor = be.alloc([n, n])
  await be.matmulForward(out, a, w, null) // warm-up: wasm tier-up, scratch
  let last = performance.now()
  let maxGapMs = 0
  let ticks = 0
  const timer = setInterval(() => {
    const now = performance.now()
    maxGapMs = Math.max(maxGapMs, now - last)
    last = now
    ticks++
  }, 5)
  let computing = true
  let duringDone = false
  const side = during === undefined
    ? Promise.resolve()
    : (async () => { while (computing) await during() ; duringDone = true })()
  const callsMs: number[] = []
  const elu0 = performance.eventLoopUtilization()
  let utilization = NaN
  try {
    last = performance.now()
    for (let i = 0; i < calls; i++) {
      const t0 = performance.now()
      await be.matmulForward(out, a, w, null)
      callsMs.push(performance.now() - t0)
    }
  } finally {
    utilization = performance.eventLoopUtilization(elu0).utilization
    computing = false
    clearInterval(timer)
    maxGapMs = Math.max(maxGapMs, performance.now() - last) // a loop that never ticked stalled all along
  }
  await side
  for (const t of [a, w, out]) be.free(t)
  return { callsMs, maxGapMs, ticks, duringDone, utilization }
}

describe('cpu backend: heavy compute does not block the event loop', function () {
  this.timeout(120000)
  let be: ComputeBackend | undefined
  let nodes: PingNode[] = []

  afterEach(async function () {
    await be?.dispose()
    be = undefined
    await Promise.all(nodes.map(async node => {
      for (const c of node.getConnections()) c.abort(new Error('test teardown'))
      await node.stop()
    }))
    nodes = []
  })

  it('with worker threads, timers tick and a libp2p ping is answered during long matmuls', async function () {
    be = await createCpuBackend({ threads: 2 })
    nodes = [await pingNode(), await pingNode()]
    const [a, b] = nodes
    const target = b.getMultiaddrs()[0]
    await a.services.ping.ping(target) // connection and protocol set up before the compute starts
    // utilization without the pings: a ping loop that never pauses keeps any event loop busy by itself
    const quiet = await matmulsWhileTicking(be, 3072, 3)
    const call = Math.min(...quiet.callsMs)
    const rtts: number[] = []
    const stats = await matmulsWhileTicking(be, 3072, 3, async () => { rtts.push(await a.services.ping.ping(target)) })
    assert.ok(stats.duringDone)
    console.log(`      [measure] threads 2: loop utilization ${quiet.utilization.toFixed(3)}, largest gap ${quiet.maxGapMs.toFixed(0)} ms; with pings: ${rtts.length} answered, slowest ${Math.max(...rtts).toFixed(0)} ms; matmul call ${call.toFixed(0)} ms`)
    assert.ok(quiet.utilization < 0.25, `the event loop was busy ${(100 * quiet.utilization).toFixed(0)}% of the compute (calls of ${call.toFixed(0)} ms)`)
    assert.ok(rtts.length >= 3, `only ${rtts.length} pings answered during ${stats.callsMs.length} calls of ${Math.min(...stats.callsMs).toFixed(0)} ms`)
  })

  it('control: inline (threads: 0) blocks the loop for a whole call, and the measurement sees it', async function () {
    be = await createCpuBackend({ threads: 0 })
    const stats = await matmulsWhileTicking(be, 768, 3)
    const call = Math.min(...stats.callsMs)
    assert.ok(stats.maxGapMs >= call * 0.9, `inline gap ${stats.maxGapMs.toFixed(0)} ms should cover a call of ${call.toFixed(0)} ms`)
    assert.ok(stats.utilization > 0.9, `inline: the loop was busy only ${(100 * stats.utilization).toFixed(0)}% of the compute`)
  })
})
