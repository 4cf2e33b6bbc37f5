// Butterfly all-reduce benchmark: `peers` separate processes (bench/allreduce-peer.ts), each a
// real layerswarm node (TCP + noise + yamux, the private DHT) on 127.0.0.1, average an `mb` MiB
// float32 vector. Reported: seconds per round (the all-reduce after the group is formed, slowest
// member, median of rounds) against two baselines measured in the same run, ratio = value /
// baseline (lower is better):
//   - the bandwidth-optimal bound 2(n-1)/n x size / link, the link being a plain bulk transfer
//     between two of the processes over the same libp2p stack and frames (the bound);
//   - the all-reduce's traffic alone: every process sends 2 x size / n to every other at once, plain
//     bulk transfers, no codec, no arithmetic: what the transport allows when all n processes share
//     the host's cores, as they do in the all-reduce;
// then the same with int8-block shards, and the CPU time of all members per round against wall
// time x cores (near 1: the host's cores are the limit, not waiting). Every round is checked: all
// members end with the same vector, no shard lost.
//
//   npx tsx bench/allreduce.ts --peers 4 --mb 64 [--rounds 3] [--codec int8-block] [--json]
import '../core/polyfills.ts'
import { spawn, type ChildProcess } from 'node:child_process'
import { appendFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import os from 'node:os'
import { parseArgs } from 'node:util'
import { createNode, type LayerswarmNode } from '../core/index.ts'
import { formatTable, machineInfo, round, type BenchReport, type BenchResult } from './report.ts'
import type { PeerConfig } from './allreduce-peer.ts'

const PEER_SCRIPT = fileURLToPath(new URL('./allreduce-peer.ts', import.meta.url))

export interface PeerProcess {
  readonly peerId: string
  readonly addrs: string[]
  readonly child: ChildProcess
  /** Sends a command and resolves with the next reply line (rejects on an error reply or exit). */
  send(cmd: Record<string, unknown>): Promise<Record<string, any>>
  /** Resolves with the exit code/signal. */
  readonly exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  kill(): void
}

/** Starts one peer process; resolves once its node is up. */
export async function spawnPeer (cfg: PeerConfig, timeoutMs = 60_000): Promise<PeerProcess> {
  // LSW_PEER_NODE_ARGS: extra node flags for the peer processes (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof")
  const nodeArgs = (process.env.LSW_PEER_NODE_ARGS ?? '').split(' ').filter(a => a !== '')
  // the parent owns the peer's data dir: a peer killed with SIGKILL cannot remove its own
  const dataDir = await mkdtemp(join(tmpdir(), 'lsw-allreduce-peer-'))
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', PEER_SCRIPT, JSON.stringify({ ...cfg, dataDir })], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000)
    if (process.env.LSW_PEER_LOG != null) appendFileSync(join(process.env.LSW_PEER_LOG, `peer-${cfg.seed}.stderr`), d)
  })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => {
    child.on('exit', (code, signal) => { void rm(dataDir, { recursive: true, force: true }).finally(() => { resolve({ code, signal }) }) })
  })
  const pending: Array<{ resolve: (v: Record<string, any>) => void, reject: (e: Error) => void }> = []
  const lines = createInterface({ input: child.stdout! })
  lines.on('line', line => {
    let msg: Record<string, any>
    try { msg = JSON.parse(line) } catch { return }
    const p = pending.shift()
    if (p == null) return
    if (msg.event === 'error') p.reject(new Error(`peer ${cfg.seed}: ${String(msg.message)} (${String(msg.code)})`))
    else p.resolve(msg)
  })
  void exited.then(({ code, signal }) => {
    for (const p of pending.splice(0)) p.reject(new Error(`peer exited (code ${code}, signal ${signal}): ${stderr}`))
  })
  const next = async (ms: number): Promise<Record<string, any>> => await new Promise((resolve, reject) => {
    const t = setTimeout(() => { reject(new Error(`peer did not answer within ${ms} ms: ${stderr}`)) }, ms)
    pending.push({ resolve: v => { clearTimeout(t); resolve(v) }, reject: e => { clearTimeout(t); reject(e) } })
  })
  let ready: Record<string, any>
  try {
    ready = await next(timeoutMs)
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  }
  return {
    peerId: ready.peerId,
    addrs: ready.addrs,
    child,
    exited,
    async send (cmd) {
      const reply = next(600_000)
      child.stdin!.write(JSON.stringify(cmd) + '\n')
      return await reply
    },
    kill () { if (child.exitCode == null && child.signalCode == null) child.kill('SIGKILL') }
  }
}

/** Asks a peer to exit, killing it if it does not within 10 s. */
export async function stopPeer (p: PeerProcess): Promise<void> {
  if (p.child.exitCode != null || p.child.signalCode != null) return
  p.child.stdin?.write(JSON.stringify({ cmd: 'exit' }) + '\n')
  const t = setTimeout(() => { p.kill() }, 10_000)
  await p.exited
  clearTimeout(t)
}

/** A bootstrap node in this process, for peer processes to join through. */
export async function startBootstrap (): Promise<{ node: LayerswarmNode, addr: string, stop: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'lsw-allreduce-boot-'))
  const node = await createNode({ dataDir: dir, bootstrapNode: true, controlEndpoint: false, listen: ['/ip4/127.0.0.1/tcp/0'] })
  await node.start()
  return { node, addr: node.addresses()[0], stop: async () => { await node.stop(); await rm(dir, { recursive: true, force: true }) } }
}

export interface BenchAllreduceOptions {
  peers?: number
  mb?: number
  /** Compressed variant's codec (default int8-block); 'none' skips it. */
  codec?: string
  rounds?: number
  log?: (line: string) => void
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2 }

/**
 * A baseline transfer, tried up to 3 times: on a heavily loaded host a bulk stream's connection is
 * sometimes dropped (ERR_WIRE_RESET); the baseline is the transfer that completed, and each failure is logged.
 */
async function retry<T> (log: (line: string) => void, what: string, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn()
    } catch (err) {
      if (attempt >= 3) throw err
      log(`${what} failed (${(err as Error).message}), trying again`)
    }
  }
}

export async function benchAllreduce (opts: BenchAllreduceOptions = {}): Promise<BenchReport> {
  const peers = opts.peers ?? 4
  const mb = opts.mb ?? 64
  const rounds = opts.rounds ?? 3
  const codec = opts.codec ?? 'int8-block'
  const log = opts.log ?? (() => {})
  if (!(Number.isInteger(peers) && peers >= 2 && peers <= 16)) throw new RangeError('peers must be an integer in 2..16')
  const elements = Math.floor(mb * 1024 * 1024 / 4)
  const size = elements * 4
  const machine = machineInfo()
  const boot = await startBootstrap()
  const results: BenchResult[] = []
  let linkMBps = NaN
  let patternS = NaN
  try {
    let roundBase = 0
    const runSet = async (codecName: string): Promise<{ reduceS: number[], totalS: number[], formS: number[], cpuS: number[], sent: number, lostShards: number }> => {
      const procs: PeerProcess[] = []
      try {
        for (let i = 0; i < peers; i++) procs.push(await spawnPeer({ bootstrap: boot.addr, elements, seed: 1000 + i, codec: codecName, joinMs: 30_000, slackMs: 10_000 }))
        if (Number.isNaN(linkMBps)) {
          // the link: a plain bulk transfer of the same size, same stack and frames, between two peer processes
          await procs[0].send({ cmd: 'bulk-serve' })
          const times: number[] = []
          for (let r = 0; r < 3; r++) {
            const reply = await retry(log, 'link transfer', async () => await procs[1].send({ cmd: 'bulk-send', addrs: procs[0].addrs, bytes: size }))
            times.push(reply.ms)
          }
          linkMBps = size / 1e6 / (median(times) / 1000)
          log(`link bandwidth ${linkMBps.toFixed(1)} MB/s (bulk ${mb} MiB, median of 3: ${times.map(t => t.toFixed(0)).join('/')} ms)`)
          // the all-reduce's traffic, all processes at once: 2 x size / n to every other process
          for (const p of procs.slice(1)) await p.send({ cmd: 'bulk-serve' })
          const each = 4 * Math.floor(2 * elements / peers)
          // connections first, one process at a time: two processes dialing each other at once may
          // lose one of the two connections, and the streams on it
          for (const [i, p] of procs.entries()) await p.send({ cmd: 'bulk-send-many', targets: procs.filter((_, j) => j !== i).map(q => ({ addrs: q.addrs, bytes: 4096 })) })
          const pattern: number[] = []
          for (let r = 0; r < 3; r++) {
            const replies = await retry(log, 'all-reduce traffic', async () => await Promise.all(procs.map(async (p, i) => await p.send({ cmd: 'bulk-send-many', targets: procs.filter((_, j) => j !== i).map(q => ({ addrs: q.addrs, bytes: each })) }))))
            pattern.push(Math.max(...replies.map(x => x.ms as number)) / 1000)
          }
          patternS = median(pattern)
          log(`all-reduce traffic alone (${peers} processes, ${(each * (peers - 1) / 1e6).toFixed(1)} MB each, at once): ${pattern.map(t => t.toFixed(2)).join('/')} s`)
        }
        const reduceS: number[] = []
        const totalS: number[] = []
        const formS: number[] = []
        const cpuS: number[] = []
        let sent = 0
        let lostShards = 0
        roundBase += 1000 // round numbers never repeat within a run, as in training
        for (let r = 1; r <= rounds; r++) {
          const replies = await Promise.all(procs.map(async p => await p.send({ cmd: 'round', round: roundBase + r, stageSize: peers, weight: 1 })))
          // a lost shard is the fault model at work (e.g. libp2p's connection monitor aborting a
          // connection whose ping starved on a loaded machine): counted and reported, not fatal
          const lost = replies.reduce((a, rep) => a + (rep.result.lostShards.length as number), 0)
          lostShards += lost
          for (const rep of replies) {
            if (rep.result.groupSize !== peers) throw new Error(`round ${r}: a peer formed a group of ${String(rep.result.groupSize)}`)
            if (lost === 0 && rep.sum !== replies[0].sum) throw new Error(`round ${r}: members disagree on the result`)
          }
          reduceS.push(Math.max(...replies.map(x => x.result.reduceMs)) / 1000)
          formS.push(Math.max(...replies.map(x => x.result.formMs)) / 1000)
          totalS.push(Math.max(...replies.map(x => x.ms)) / 1000)
          cpuS.push(replies.reduce((a, x) => a + (x.cpuMs as number), 0) / 1000)
          sent = median(replies.map(x => x.result.bytesSent))
          log(`${codecName} round ${r}: ${lost} shards lost, all-reduce ${reduceS.at(-1)!.toFixed(2)} s, group ${formS.at(-1)!.toFixed(2)} s, total ${totalS.at(-1)!.toFixed(2)} s, ${(sent / 1e6).toFixed(1)} MB sent per peer, CPU of all members ${cpuS.at(-1)!.toFixed(2)} s`)
        }
        return { reduceS, totalS, formS, cpuS, sent, lostShards }
      } finally {
        await Promise.all(procs.map(stopPeer))
      }
    }
    const bound = 2 * (peers - 1) / peers * size / 1e6 // MB each member sends (and receives)
    const raw = await runSet('none')
    const boundS = bound / linkMBps
    results.push({ name: `link bandwidth (bulk ${mb} MiB, libp2p tcp+noise+yamux, 2 processes)`, value: round(linkMBps, 1), unit: 'MB/s', baseline: null, ratio: null })
    results.push({ name: `all-reduce traffic alone: ${peers} processes each sending 2 x size / n to every other at once (bulk, median of 3)`, value: round(patternS, 3), unit: 's', baseline: { name: 'bandwidth-optimal bound 2(n-1)/n x size / link', value: round(boundS, 3) }, ratio: round(patternS / boundS, 3) })
    const cores = os.cpus().length
    const add = (name: string, set: Awaited<ReturnType<typeof runSet>>): void => {
      const v = median(set.reduceS)
      const what = `${name}: s/round (median of ${set.reduceS.length}, ${(set.sent / 1e6).toFixed(1)} MB sent per member, ${set.lostShards} shards lost)`
      results.push({ name: what, value: round(v, 3), unit: 's', baseline: { name: 'bandwidth-optimal bound 2(n-1)/n x size / link', value: round(boundS, 3) }, ratio: round(v / boundS, 3) })
      results.push({ name: `${name}: s/round against the traffic alone`, value: round(v, 3), unit: 's', baseline: { name: 'all-reduce traffic alone (same run)', value: round(patternS, 3) }, ratio: round(v / patternS, 3) })
      const cpu = median(set.cpuS)
      const total = median(set.totalS)
      results.push({ name: `${name}: CPU time of all members per round (median)`, value: round(cpu, 3), unit: 's', baseline: { name: `round wall time x ${cores} cores`, value: round(total * cores, 3) }, ratio: round(cpu / (total * cores), 3) })
    }
    add(`allreduce ${peers} peers x ${mb} MiB, raw f32`, raw)
    results.push({ name: 'group formation through the DHT (slowest member, median)', value: round(median(raw.formS), 3), unit: 's', baseline: null, ratio: null })
    if (codec !== 'none') {
      const comp = await runSet(codec)
      add(`allreduce ${peers} peers x ${mb} MiB, ${codec}`, comp)
    }
  } finally {
    await boot.stop()
  }
  machine.loadAvgEnd = round(os.loadavg()[0], 2)
  return {
    suite: 'allreduce',
    backend: 'layerswarm butterfly all-reduce (libp2p tcp + noise + yamux, 127.0.0.1)',
    device: `${peers} processes on one host`,
    machine,
    baseline: { name: 'bandwidth-optimal bound', formula: '2(n-1)/n x size / link bandwidth', linkMBps: round(linkMBps, 1), trafficAloneS: round(patternS, 3), peers, mib: mb },
    results
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { peers: { type: 'string', default: '4' }, mb: { type: 'string', default: '64' }, rounds: { type: 'string', default: '3' }, codec: { type: 'string', default: 'int8-block' }, json: { type: 'boolean', default: false } } })
  const report = await benchAllreduce({
    peers: Number(values.peers), mb: Number(values.mb), rounds: Number(values.rounds), codec: values.codec,
    log: values.json === true ? undefined : line => { process.stderr.write(line + '\n') }
  })
  process.stdout.write(values.json === true ? JSON.stringify(report, null, 2) + '\n' : formatTable(report) + '\n')
  process.exit(0)
}
