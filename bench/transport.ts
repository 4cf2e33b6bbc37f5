// `layerswarm bench transport`: one activation (64 MiB of float32 by default) sent from this process
// to a receiver in another process (bench/transport-peer.ts) on 127.0.0.1, by
//   - raw TCP (`node:net`): the baseline of every row, measured in the same run;
//   - the project's framed protocol (core/wire openFramed/handleFramed with the pipeline's defaults:
//     one frame per activation, credit window 4, 1 MiB writes) over libp2p TCP + yamux, with noise,
//     with TLS (@libp2p/tls, Node's native crypto) and unencrypted (plaintext: bench only);
//   - bare libp2p stream bytes (no framing) over the same three stacks, so framing's own cost shows.
// Every transfer opens a fresh stream on a warm connection (as the pipeline opens one per
// microbatch) and ends when the receiver acknowledges the whole activation. Cases are interleaved,
// in a rotating order, rep by rep, so a change in the machine's load hits them alike; each row is the
// median over reps. CPU seconds per GB count both processes (this one and the receiver).
//
//   npx tsx bench/transport.ts [--mb 64] [--reps 7] [--json]
import '../core/polyfills.ts'
import { spawn, type ChildProcess } from 'node:child_process'
import net from 'node:net'
import os from 'node:os'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { multiaddr } from '@multiformats/multiaddr'
import { ConfigError } from '../core/errors.ts'
import { withDeadline } from '../core/timers.ts'
import { DEFAULT_WIRE_LIMITS, float32Bytes, openFramed } from '../core/wire/index.ts'
import { formatTable, machineInfo, round, type BenchReport, type BenchResult } from './report.ts'
import { ACK, BARE_PROTOCOL, createBenchNode, ENCRYPTERS, FRAMED_PROTOCOL, TRANSPORT_RUN_ID, type EncrypterName } from './transport-peer.ts'
import type { Libp2p } from '@libp2p/interface'

const PEER_SCRIPT = fileURLToPath(new URL('./transport-peer.ts', import.meta.url))
/** Bound on one transfer: 1 GiB at a few MB/s on a badly loaded machine still fits. */
const TRANSFER_TIMEOUT_MS = 300_000
/** Bytes per write on bare streams: the framed stream's default chunk (core/wire/framed-stream.ts). */
const BARE_CHUNK = 1024 * 1024
const MAX_MB = 1024

export interface BenchTransportOptions {
  /** MiB per activation (default 64). */
  mb?: number
  /** Interleaved repetitions; each row is the median (default 7). */
  reps?: number
  log?: (line: string) => void
}

interface Case { name: string, cpuName: string, run: (signal: AbortSignal) => Promise<void> }

const LABEL: Record<EncrypterName, string> = {
  noise: 'noise',
  tls: 'TLS 1.3 (@libp2p/tls)',
  plaintext: 'plaintext: UNENCRYPTED, bench only'
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2 }

/** Checks the options the CLI and a direct call share; ConfigError says what to give instead. */
export function transportOptions (opts: BenchTransportOptions): { mb: number, reps: number } {
  const mb = opts.mb ?? 64
  const reps = opts.reps ?? 7
  if (!(typeof mb === 'number' && Number.isFinite(mb) && mb > 0 && mb <= MAX_MB)) throw new ConfigError(`--mb ${String(mb)}: give the activation's size in MiB in (0, ${MAX_MB}]`)
  if (!(Number.isSafeInteger(reps) && reps >= 1 && reps <= 1000)) throw new ConfigError(`--reps ${String(reps)}: give an integer in 1..1000`)
  return { mb, reps }
}

interface Receiver {
  raw: number
  nodes: Record<EncrypterName, string>
  cpu: () => Promise<number>
  stop: () => Promise<void>
}

/** Starts the receiver process; resolves once it listens. */
async function startReceiver (bytes: number, signal: AbortSignal): Promise<Receiver> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', PEER_SCRIPT, JSON.stringify({ bytes })], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000) })
  const exited = new Promise<void>(resolve => { child.once('exit', () => { resolve() }) })
  const kill = (): void => { if (child.exitCode == null && child.signalCode == null) child.kill('SIGKILL') }
  const waiting: Array<{ resolve: (m: Record<string, any>) => void, reject: (e: Error) => void }> = []
  createInterface({ input: child.stdout! }).on('line', line => {
    let msg: Record<string, any>
    try { msg = JSON.parse(line) } catch { return }
    const w = waiting.shift()
    if (msg.event === 'error') w?.reject(new Error(`transport peer: ${String(msg.message)}`))
    else w?.resolve(msg)
  })
  void exited.then(() => { for (const w of waiting.splice(0)) w.reject(new Error(`transport peer exited (code ${child.exitCode}, signal ${child.signalCode}): ${stderr}`)) })
  const next = async (sig: AbortSignal): Promise<Record<string, any>> => await new Promise((resolve, reject) => {
    const onAbort = (): void => { reject(new Error(`transport peer did not answer: ${stderr}`)) }
    sig.addEventListener('abort', onAbort, { once: true })
    waiting.push({ resolve: m => { sig.removeEventListener('abort', onAbort); resolve(m) }, reject: e => { sig.removeEventListener('abort', onAbort); reject(e) } })
  })
  try {
    const ready = await withDeadline(60_000, [signal], next)
    return {
      raw: ready.raw,
      nodes: ready.nodes,
      async cpu () {
        const reply = withDeadline(10_000, [], next)
        child.stdin!.write(JSON.stringify({ cmd: 'cpu' }) + '\n')
        const m = await reply
        return (m.user + m.system) / 1e6
      },
      async stop () {
        if (child.exitCode == null && child.signalCode == null) child.stdin?.write(JSON.stringify({ cmd: 'exit' }) + '\n')
        const t = setTimeout(kill, 10_000)
        await exited
        clearTimeout(t)
      }
    }
  } catch (err) {
    kill()
    throw err
  }
}

/** Raw TCP: connect, write the activation, wait for the receiver's 1-byte ack. */
async function rawSend (port: number, data: Uint8Array, signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, signal })
    socket.once('connect', () => { socket.write(data) })
    socket.once('data', (d: Buffer) => {
      socket.destroy()
      if (d[0] === ACK[0]) resolve()
      else reject(new Error('raw TCP: bad ack'))
    })
    socket.once('error', reject)
    socket.once('close', () => { reject(new Error('raw TCP: closed before the ack')) })
  })
}

/** The framed protocol as the pipeline sends an activation: frames of at most 64 MiB, then the receiver's ack. */
async function framedSend (node: Libp2p, addr: string, data: Uint8Array, signal: AbortSignal): Promise<void> {
  const fs = await openFramed(node, multiaddr(addr), FRAMED_PROTOCOL, { runId: TRANSPORT_RUN_ID, signal })
  try {
    const frame = DEFAULT_WIRE_LIMITS.maxPayloadBytes
    const parts = Math.ceil(data.byteLength / frame)
    for (let i = 0; i < parts; i++) {
      const chunk = data.subarray(i * frame, Math.min((i + 1) * frame, data.byteLength))
      await fs.send({ kind: 'activation', microbatchId: i, stage: 1, dtype: 'f32', shape: [chunk.byteLength / 4], partIndex: i, partCount: parts }, chunk, { signal })
    }
    await fs.closeWrite({ signal })
    const ack = await fs.expect({ signal })
    if ((ack.header.metadata as { got?: number } | undefined)?.got !== data.byteLength) throw new Error('framed: short transfer')
  } catch (err) {
    fs.abort(err as Error)
    throw err
  }
}

/** Bare stream bytes: 1 MiB writes with backpressure, no header, no checksum, no credit. */
async function bareSend (node: Libp2p, addr: string, data: Uint8Array, signal: AbortSignal): Promise<void> {
  const stream = await node.dialProtocol(multiaddr(addr), BARE_PROTOCOL, { signal })
  const acked = new Promise<void>((resolve, reject) => {
    stream.addEventListener('message', () => { resolve() }, { once: true })
    stream.addEventListener('close', (evt) => { reject(evt.error ?? new Error('bare stream closed before the ack')) }, { once: true })
  })
  try {
    for (let o = 0; o < data.byteLength; o += BARE_CHUNK) {
      if (!stream.send(data.subarray(o, Math.min(o + BARE_CHUNK, data.byteLength)))) await stream.onDrain({ signal })
    }
    await acked
    await stream.close({ signal })
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}

export async function benchTransport (opts: BenchTransportOptions = {}): Promise<BenchReport> {
  const { mb, reps } = transportOptions(opts)
  const log = opts.log ?? (() => {})
  const bytes = Math.floor(mb * 1024 * 1024 / 4) * 4
  if (bytes < 4) throw new ConfigError(`--mb ${mb}: at least one float32`)
  const machine = machineInfo()
  // Build the activation before any dial: seconds of synchronous work right after a dial can trip
  // the peer's upgrade timeouts (docs/wire.md).
  const values = new Float32Array(bytes / 4)
  for (let i = 0; i < values.length; i++) values[i] = Math.sin(i) * 3
  const data = float32Bytes(values)
  const stop = new AbortController()
  const receiver = await startReceiver(bytes, stop.signal)
  const senders: Partial<Record<EncrypterName, Libp2p>> = {}
  try {
    for (const enc of ENCRYPTERS) {
      const node = await createBenchNode(enc)
      senders[enc] = node
      await node.dial(multiaddr(receiver.nodes[enc]))
    }
    const cases: Case[] = [{ name: 'raw TCP (node:net)', cpuName: 'raw TCP', run: async s => { await rawSend(receiver.raw, data, s) } }]
    for (const enc of ENCRYPTERS) {
      cases.push({ name: `framed protocol, libp2p tcp + ${LABEL[enc]} + yamux`, cpuName: `framed, ${enc}`, run: async s => { await framedSend(senders[enc]!, receiver.nodes[enc], data, s) } })
    }
    for (const enc of ENCRYPTERS) {
      cases.push({ name: `bare libp2p stream bytes (no framing), tcp + ${LABEL[enc]} + yamux`, cpuName: `bare, ${enc}`, run: async s => { await bareSend(senders[enc]!, receiver.nodes[enc], data, s) } })
    }
    const wall = cases.map(() => [] as number[])
    const cpu = cases.map(() => [] as number[])
    const cpuSend = cases.map(() => [] as number[])
    const once = async (i: number): Promise<void> => {
      const c0 = process.cpuUsage()
      const r0 = await receiver.cpu()
      const t0 = performance.now()
      await withDeadline(TRANSFER_TIMEOUT_MS, [stop.signal], cases[i].run)
      const ms = performance.now() - t0
      const c = process.cpuUsage(c0)
      const r = await receiver.cpu() - r0
      wall[i].push(ms)
      cpu[i].push((c.user + c.system) / 1e6 + r)
      cpuSend[i].push((c.user + c.system) / 1e6)
    }
    // warm-up (JIT, yamux windows, TLS session): untimed
    for (let i = 0; i < cases.length; i++) await once(i)
    for (const xs of [...wall, ...cpu, ...cpuSend]) xs.length = 0
    for (let r = 0; r < reps; r++) {
      for (let k = 0; k < cases.length; k++) {
        const i = (k + r) % cases.length
        await once(i)
      }
      log(`rep ${r + 1}/${reps}: ${cases.map((c, i) => `${c.cpuName} ${(bytes / 1e6 / (wall[i].at(-1)! / 1000)).toFixed(0)}`).join(', ')} MB/s`)
    }
    log(`CPU s/GB, sender + receiver (medians): ${cases.map((c, i) => `${c.cpuName} ${(median(cpuSend[i]) / (bytes / 1e9)).toFixed(2)} + ${((median(cpu[i]) - median(cpuSend[i])) / (bytes / 1e9)).toFixed(2)}`).join(', ')}`)
    const mbps = wall.map(w => round(bytes / 1e6 / (median(w) / 1000), 1))
    const cpuPerGB = cpu.map(c => round(median(c) / (bytes / 1e9), 3))
    const results: BenchResult[] = []
    const base = { name: 'raw TCP', value: mbps[0] }
    cases.forEach((c, i) => { results.push({ name: `${c.name}, ${mb} MiB activation`, value: mbps[i], unit: 'MB/s', baseline: base, ratio: mbps[i] / base.value }) })
    const cpuBase = { name: 'raw TCP', value: cpuPerGB[0] }
    cases.forEach((c, i) => { results.push({ name: `CPU seconds per GB, both processes: ${c.cpuName}`, value: cpuPerGB[i], unit: 'CPU s/GB', baseline: cpuBase, ratio: cpuPerGB[i] / cpuBase.value }) })
    machine.loadAvgEnd = round(os.loadavg()[0], 2)
    return {
      suite: 'transport',
      backend: 'layerswarm framed protocol over libp2p (tcp + yamux)',
      device: `sender and receiver processes on one host, 127.0.0.1, ${os.availableParallelism()} cores`,
      machine,
      baseline: {
        name: 'raw TCP',
        what: 'node:net socket, the same bytes, the receiver copies them into one buffer and acknowledges',
        mib: mb,
        reps,
        statistic: 'median over reps; cases interleaved in a rotating order',
        frames: 'one frame per activation up to 64 MiB, credit window 4, 1 MiB writes (the pipeline\'s defaults)',
        cpu: 'CPU s/GB: user + system seconds of both processes per 1e9 bytes moved; ratio > 1 costs more than raw TCP'
      },
      results
    }
  } finally {
    stop.abort()
    await Promise.all(Object.values(senders).map(async n => { await n.stop() }))
    await receiver.stop()
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { mb: { type: 'string', default: '64' }, reps: { type: 'string', default: '7' }, json: { type: 'boolean', default: false } } })
  const report = await benchTransport({ mb: Number(values.mb), reps: Number(values.reps), log: values.json === true ? undefined : line => { process.stderr.write(line + '\n') } })
  process.stdout.write(values.json === true ? JSON.stringify(report, null, 2) + '\n' : formatTable(report) + '\n')
  process.exit(0)
}
