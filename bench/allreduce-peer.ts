// One all-reduce peer in its own process, driven over stdin/stdout with JSON lines. Spawned by
// bench/allreduce.ts and test/averaging-process.test.ts: a real layerswarm node (createNode) that
// joins through a bootstrap address and runs Averager rounds on a deterministic vector.
//
//   argv[2]: JSON config {bootstrap, elements, seed, codec?, joinMs?, slackMs?, bandwidth?, dieOnContribution?}
//   stdout:  {"event":"ready","peerId","addrs"} then one reply per command
//   stdin:   {"cmd":"round","round","stageSize","weight"} -> {"event":"round", result (no vector), sum, head, ms}
//            {"cmd":"bulk-serve"} -> {"event":"ok"}    (accepts bulk transfers)
//            {"cmd":"bulk-send","addrs","bytes"} -> {"event":"bulk","ms","bytes"} (one transfer, frames as the all-reduce sends them)
//            {"cmd":"bulk-send-many","targets":[{"addrs","bytes"}]} -> {"event":"bulk","ms","bytes"} (to every target at once)
//   a round's reply carries cpuMs: this process's CPU time (user + system) during the round
//            {"cmd":"exit"}
import '../core/polyfills.ts'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { multiaddr } from '@multiformats/multiaddr'
import { appendFileSync } from 'node:fs'
import { createLogger, createNode } from '../core/index.ts'
import { Averager, DEFAULT_CHUNK_ELEMENTS, shardCodecs } from '../core/averaging/index.ts'
import { float32Bytes, handleFramed, openFramed } from '../core/wire/index.ts'
import { builtinCodecs } from '../plugins/compression/index.ts'
import { prng } from '../test/wire-helpers.ts'
import { withDeadline } from '../core/timers.ts'
import { countAndAck } from './framed-sink.ts'

/** Bound on one command (a round or a bulk transfer of up to a few hundred MiB on loopback). */
const COMMAND_TIMEOUT_MS = 300_000

export const BULK_PROTOCOL = '/layerswarm/bench/bulk/1.0.0'
export const BENCH_RUN_ID = 'b0b1b2b3b4b5b6b7b8b9babbbcbdbebf'

export interface PeerConfig {
  bootstrap: string
  elements: number
  seed: number
  /** Codec name for both averaging roles ('none' = raw f32). */
  codec?: string
  joinMs?: number
  slackMs?: number
  bandwidth?: number
  /** The node's data dir, made and removed by the parent (spawnPeer); a temp dir of its own where absent. */
  dataDir?: string
  /** Kill this process (SIGKILL) the moment it is about to send its first contribution: a peer dying mid-round. */
  dieOnContribution?: boolean
}

/** The vector a peer with `seed` averages: the parent recomputes it to check results. */
export function peerVector (seed: number, n: number): Float32Array {
  const rand = prng(seed)
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) out[i] = rand() * 2 - 1
  return out
}

function fileLogger (path: string): ReturnType<typeof createLogger> {
  return createLogger({ level: 'debug', format: 'json', write: line => { appendFileSync(path, line + '\n') } })
}

async function main (): Promise<void> {
  const cfg = JSON.parse(process.argv[2]) as PeerConfig
  const dir = cfg.dataDir ?? await mkdtemp(join(tmpdir(), 'lsw-allreduce-peer-'))
  const node = await createNode({ dataDir: dir, plugins: [], controlEndpoint: false, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [cfg.bootstrap] })
  await node.start()
  const codec = cfg.codec ?? 'none'
  const averager = new Averager(node.libp2p, {
    runId: BENCH_RUN_ID,
    codecs: shardCodecs({ parameter: codec, 'parameter-grad': codec }, builtinCodecs()),
    joinMs: cfg.joinMs,
    slackMs: cfg.slackMs,
    bandwidth: cfg.bandwidth,
    // LSW_PEER_LOG=<dir>: debug log lines of this peer go to <dir>/peer-<seed>.log
    log: process.env.LSW_PEER_LOG != null ? fileLogger(join(process.env.LSW_PEER_LOG, `peer-${cfg.seed}.log`)) : undefined,
    faults: cfg.dieOnContribution === true ? { contribution: () => { process.kill(process.pid, 'SIGKILL'); throw new Error('unreachable') } } : undefined
  })
  await averager.start()
  const params = peerVector(cfg.seed, cfg.elements)
  const reply = (msg: Record<string, unknown>): void => { process.stdout.write(JSON.stringify(msg) + '\n') }
  const shutdown = async (): Promise<void> => {
    await averager.stop()
    await node.stop()
    await rm(dir, { recursive: true, force: true })
  }
  reply({ event: 'ready', peerId: node.peerId, addrs: node.addresses() })

  const lines = createInterface({ input: process.stdin })
  for await (const line of lines) {
    if (line.trim() === '') continue
    const cmd = JSON.parse(line) as Record<string, any>
    try {
      if (cmd.cmd === 'round') {
        const t0 = performance.now()
        const cpu0 = process.cpuUsage()
        const r = await withDeadline(COMMAND_TIMEOUT_MS, [], async signal => await averager.round({ round: cmd.round, stage: 0, params, weight: cmd.weight ?? 1, stageSize: cmd.stageSize, signal }))
        const ms = performance.now() - t0
        const cpu = process.cpuUsage(cpu0)
        let sum = 0
        for (let i = 0; i < r.averaged.length; i++) sum += r.averaged[i]
        const { averaged, ...rest } = r
        reply({ event: 'round', result: rest, sum, head: Array.from(averaged.subarray(0, 8)), ms, cpuMs: (cpu.user + cpu.system) / 1000 })
      } else if (cmd.cmd === 'bulk-serve') {
        await handleFramed(node.libp2p, BULK_PROTOCOL, countAndAck, { runId: BENCH_RUN_ID, timeoutMs: COMMAND_TIMEOUT_MS, onError: (err, peer) => { process.stderr.write(`bulk from ${peer} failed: ${(err as { code?: string }).code ?? ''} ${err.message}\n`) } })
        reply({ event: 'ok' })
      } else if (cmd.cmd === 'bulk-send' || cmd.cmd === 'bulk-send-many') {
        const targets: Array<{ addrs: string[], bytes: number }> = cmd.cmd === 'bulk-send' ? [{ addrs: cmd.addrs, bytes: cmd.bytes }] : cmd.targets
        const payloads = targets.map(t => float32Bytes(peerVector(1, t.bytes / 4)))
        const t0 = performance.now()
        await withDeadline(COMMAND_TIMEOUT_MS, [], async signal => {
          await Promise.all(targets.map(async (t, i) => { await bulkSend(node.libp2p, t.addrs[0], payloads[i], signal) }))
        })
        reply({ event: 'bulk', ms: performance.now() - t0, bytes: targets.reduce((a, t) => a + t.bytes, 0) })
      } else if (cmd.cmd === 'exit') {
        break
      } else {
        reply({ event: 'error', message: `unknown command ${String(cmd.cmd)}` })
      }
    } catch (err) {
      reply({ event: 'error', message: (err as Error).message, code: (err as { code?: string }).code })
    }
  }
  await shutdown()
  process.exit(0)
}

/**
 * One bulk transfer of `data` to `addr` in the all-reduce's frames (2^18 f32, 1 MiB; 4 MiB frames let
 * libp2p's connection monitor drop connections on a loaded host); resolves when the receiver
 * acknowledged every byte.
 */
async function bulkSend (libp2p: Parameters<typeof openFramed>[0], addr: string, data: Uint8Array, signal: AbortSignal): Promise<void> {
  const fs = await openFramed(libp2p, multiaddr(addr), BULK_PROTOCOL, { runId: BENCH_RUN_ID, signal })
  const frame = 4 * DEFAULT_CHUNK_ELEMENTS
  const parts = Math.ceil(data.byteLength / frame)
  for (let i = 0; i < parts; i++) {
    const chunk = data.subarray(i * frame, Math.min((i + 1) * frame, data.byteLength))
    await fs.send({ kind: 'parameter-shard', dtype: 'f32', shape: [chunk.byteLength / 4], partIndex: i, partCount: parts }, chunk, { signal })
  }
  await fs.closeWrite()
  const ack = await fs.expect({ signal })
  if ((ack.header.metadata as { got: number }).got !== data.byteLength) throw new Error('short bulk transfer')
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch(err => { process.stderr.write(`allreduce peer failed: ${(err as Error).stack ?? String(err)}\n`); process.exit(1) })
}
