// State sync: a node joining a stage downloads the stage's current state (weights, outer
// momentum, optimizer state: bytes from state-format.ts) from several stage peers at once, and
// serves nothing before the bytes check out.
//
// Protocol /layerswarm/state-sync/1.0.0, one request/response per stream (core/wire frames):
//   request  {op: "manifest", stage}                 -> response {op, version, size, sha256, chunkBytes, chunks}
//                                                        payload: sha256 of every chunk, 32 bytes each
//   request  {op: "chunk", stage, version, index}    -> response payload: the chunk's bytes
//   error frame: no state for the stage (ERR_STATE_NO_PEERS), that version no longer served
//   (ERR_STATE_VERSION), a bad request (ERR_STATE_PROTOCOL)
//
// The joiner asks every candidate peer for its manifest, takes the newest version that at least
// `minAgree` peers (2 by default, 1 when only one answered) report with one identical
// (sha256, size, chunk hashes), and that is backed by a strict majority of the peers reporting that
// version. Chunks are then fetched in parallel, one worker per agreeing peer pulling the next
// index from a shared queue (so different ranges come from different peers, fast peers serve
// more). Each chunk is checked against its agreed hash on arrival: a peer that serves a bad chunk is
// reported and dropped, the chunk is fetched again elsewhere. The assembled bytes are checked
// against the agreed sha256 before they are returned.
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p } from '@libp2p/interface'
import type { Logger } from '../contracts/logger.ts'
import { silentLogger } from '../logger.ts'
import { handleFramed, requestFrame, type Frame, type FramedStream } from '../wire/index.ts'
import {
  averagingVerdict, NoStatePeersError, StateAgreementError, StateChunkHashError, StateHashError, StateProtocolError,
  StateVersionError
} from './errors.ts'

export const STATE_SYNC_PROTOCOL = '/layerswarm/state-sync/1.0.0'
export const DEFAULT_STATE_CHUNK_BYTES = 4 * 1024 * 1024
/** Largest state a joiner accepts by default (bytes). */
export const DEFAULT_MAX_STATE_BYTES = 8 * 1024 ** 3

export interface StateSnapshot {
  /** What peers agree on, e.g. the averaging round after which the state was taken. */
  readonly version: number
  readonly bytes: Uint8Array
}

export async function sha256Hex (bytes: Uint8Array): Promise<string> {
  return hex(await sha256(bytes))
}

async function sha256 (bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>))
}

function hex (b: Uint8Array): string {
  let s = ''
  for (const x of b) s += x.toString(16).padStart(2, '0')
  return s
}

// ---- serving ----------------------------------------------------------------------------------

export interface StateServerInit {
  readonly runId: string
  /** The state this node serves for `stage` now, or undefined when it has none (not synced yet, other stage). */
  readonly snapshot: (stage: number) => StateSnapshot | undefined | Promise<StateSnapshot | undefined>
  readonly chunkBytes?: number
  readonly log?: Logger
  /** Fault injection for tests and drills: replaces the bytes of a served chunk. */
  readonly faults?: { readonly chunk?: (index: number, bytes: Uint8Array) => Uint8Array }
}

interface Prepared {
  version: number
  bytes: Uint8Array
  sha256: string
  chunkHashes: Uint8Array
  chunkBytes: number
}

type ServerLibp2p = Pick<Libp2p, 'handle' | 'unhandle'>

export class StateServer {
  private readonly chunkBytes: number
  private readonly log: Logger
  private readonly prepared = new Map<number, Promise<Prepared>>()
  private started = false

  constructor (private readonly libp2p: ServerLibp2p, private readonly init: StateServerInit) {
    this.chunkBytes = init.chunkBytes ?? DEFAULT_STATE_CHUNK_BYTES
    this.log = (init.log ?? silentLogger).forComponent('layerswarm:state-sync')
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await handleFramed(this.libp2p, STATE_SYNC_PROTOCOL, async (fs, _conn, signal) => { await this.serve(fs, signal) }, {
      runId: this.init.runId,
      timeoutMs: 60_000,
      log: this.init.log,
      limits: { maxPayloadBytes: Math.max(this.chunkBytes, 1024 * 1024) }
    })
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    await this.libp2p.unhandle(STATE_SYNC_PROTOCOL).catch(() => {})
  }

  /** Hashes of the current snapshot of `stage`, computed once per version. */
  private async prepare (stage: number): Promise<Prepared> {
    const snap = await this.init.snapshot(stage)
    if (snap == null) throw new NoStatePeersError(`no state for stage ${stage} here`)
    const cached = this.prepared.get(stage)
    if (cached != null) {
      const p = await cached
      if (p.version === snap.version && p.bytes === snap.bytes) return p
    }
    const work = (async (): Promise<Prepared> => {
      const chunks = Math.ceil(snap.bytes.byteLength / this.chunkBytes)
      const chunkHashes = new Uint8Array(32 * chunks)
      for (let i = 0; i < chunks; i++) chunkHashes.set(await sha256(snap.bytes.subarray(i * this.chunkBytes, (i + 1) * this.chunkBytes)), 32 * i)
      return { version: snap.version, bytes: snap.bytes, sha256: await sha256Hex(snap.bytes), chunkHashes, chunkBytes: this.chunkBytes }
    })()
    this.prepared.set(stage, work)
    return await work
  }

  private async serve (fs: FramedStream, signal: AbortSignal): Promise<void> {
    const req = await fs.expect({ signal })
    const m = req.header.metadata as { op?: unknown, version?: unknown, index?: unknown } | undefined
    if (req.header.kind !== 'request' || m == null) throw new StateProtocolError('expected a request frame with metadata')
    const stage = req.header.stage
    const p = await this.prepare(stage)
    if (m.op === 'manifest') {
      await fs.send({
        kind: 'response', stage,
        metadata: { op: 'manifest', version: p.version, size: p.bytes.byteLength, sha256: p.sha256, chunkBytes: p.chunkBytes, chunks: p.chunkHashes.byteLength / 32 }
      }, p.chunkHashes, { signal })
      return
    }
    if (m.op !== 'chunk' || !Number.isSafeInteger(m.version) || !Number.isSafeInteger(m.index)) throw new StateProtocolError('bad state-sync request')
    if (m.version !== p.version) throw new StateVersionError(`version ${String(m.version)} is not served here (now ${p.version})`)
    const index = m.index as number
    const chunks = p.chunkHashes.byteLength / 32
    if (index < 0 || index >= chunks) throw new StateProtocolError(`chunk ${index} out of 0..${chunks - 1}`)
    let bytes = p.bytes.subarray(index * p.chunkBytes, Math.min((index + 1) * p.chunkBytes, p.bytes.byteLength))
    if (this.init.faults?.chunk != null) bytes = this.init.faults.chunk(index, bytes.slice())
    await fs.send({ kind: 'response', stage, metadata: { op: 'chunk', index } }, bytes, { signal })
  }
}

// ---- joining ----------------------------------------------------------------------------------

export interface SyncStateOptions {
  readonly runId: string
  readonly stage: number
  /** Peers that agree on one hash needed before trusting it (when that many answered). Default 2. */
  readonly minAgree?: number
  /** Deadline per request (ms). Default 30 s. */
  readonly requestTimeoutMs?: number
  /** Most peers downloaded from at once. Default 8. */
  readonly parallel?: number
  readonly maxStateBytes?: number
  readonly signal?: AbortSignal
  readonly log?: Logger
}

export interface SyncStateResult {
  readonly version: number
  readonly bytes: Uint8Array
  readonly sha256: string
  /** Peers that reported the agreed manifest. */
  readonly agreeing: readonly string[]
  /** Peers that reported another hash for the agreed version, or an older version. */
  readonly disagreeing: ReadonlyArray<{ peer: string, version: number, sha256: string }>
  /** Chunks each peer served (verified). */
  readonly chunksByPeer: ReadonlyMap<string, number>
  /** Peers caught serving bytes that do not match (or failing): reason codes. */
  readonly badPeers: ReadonlyArray<{ peer: string, reason: string }>
}

interface Manifest {
  peer: string
  version: number
  size: number
  sha256: string
  chunkBytes: number
  chunks: number
  chunkHashes: Uint8Array
  key: string
}

type SyncLibp2p = Pick<Libp2p, 'dialProtocol'>

/** Downloads and verifies a stage's state from `peers` (see the top of this file). */
export async function syncState (libp2p: SyncLibp2p, peers: readonly string[], opts: SyncStateOptions): Promise<SyncStateResult> {
  const log = (opts.log ?? silentLogger).forComponent('layerswarm:state-sync')
  const timeoutMs = opts.requestTimeoutMs ?? 30_000
  const maxBytes = opts.maxStateBytes ?? DEFAULT_MAX_STATE_BYTES
  const request = async (peer: string, metadata: Record<string, unknown>, maxPayloadBytes: number): Promise<Frame> =>
    await requestFrame(libp2p, peerIdFromString(peer), STATE_SYNC_PROTOCOL, { kind: 'request', stage: opts.stage, metadata }, undefined,
      { runId: opts.runId, timeoutMs, signal: opts.signal, limits: { maxPayloadBytes: Math.max(1024, maxPayloadBytes) } })

  // 1. manifests
  const badPeers: Array<{ peer: string, reason: string }> = []
  const manifests: Manifest[] = []
  await Promise.all([...new Set(peers)].map(async peer => {
    try {
      const f = await request(peer, { op: 'manifest' }, 32 * Math.ceil(maxBytes / 65536))
      manifests.push(await parseManifest(peer, f, maxBytes))
    } catch (err) {
      log.debug('no manifest', { peer, error: (err as Error).message })
      if (averagingVerdict(err) === 'reject') badPeers.push({ peer, reason: (err as { code?: string }).code ?? 'ERR_UNKNOWN' })
    }
  }))
  opts.signal?.throwIfAborted()
  if (manifests.length === 0) throw new NoStatePeersError(`none of ${peers.length} peers served state for stage ${opts.stage}`)

  // 2. agreement: newest version backed by enough peers and by a strict majority of that version's reporters
  const need = Math.min(opts.minAgree ?? 2, manifests.length)
  const byKey = new Map<string, Manifest[]>()
  for (const m of manifests) byKey.set(m.key, [...(byKey.get(m.key) ?? []), m])
  const candidates = [...byKey.values()].filter(g => g.length >= need).sort((a, b) => b[0].version - a[0].version || b.length - a.length)
  const chosen = candidates[0]
  if (chosen == null) throw new StateAgreementError(`no state of stage ${opts.stage} is reported identically by ${need} peers (${manifests.map(m => `${m.peer.slice(-6)}:v${m.version}:${m.sha256.slice(0, 8)}`).join(', ')})`)
  const sameVersion = manifests.filter(m => m.version === chosen[0].version)
  if (2 * chosen.length <= sameVersion.length) throw new StateAgreementError(`peers disagree on version ${chosen[0].version} of stage ${opts.stage}: no hash has a majority`)
  const agreed = chosen[0]
  const agreeing = chosen.map(m => m.peer)
  const disagreeing = manifests.filter(m => m.key !== agreed.key).map(m => ({ peer: m.peer, version: m.version, sha256: m.sha256 }))

  // 3. chunks, in parallel from the agreeing peers, each verified on arrival
  const bytes = new Uint8Array(agreed.size)
  const queue = Array.from({ length: agreed.chunks }, (_, i) => i)
  const chunksByPeer = new Map<string, number>()
  let remaining = agreed.chunks
  const healthy = new Set(agreeing.slice(0, opts.parallel ?? 8))
  const failures = new Map<string, number>()
  const worker = async (peer: string): Promise<void> => {
    while (queue.length > 0) {
      opts.signal?.throwIfAborted()
      const index = queue.shift() as number
      const start = index * agreed.chunkBytes
      const len = Math.min(agreed.chunkBytes, agreed.size - start)
      try {
        const f = await request(peer, { op: 'chunk', version: agreed.version, index }, agreed.chunkBytes)
        const meta = f.header.metadata as { op?: unknown, index?: unknown } | undefined
        if (f.header.kind !== 'response' || meta?.op !== 'chunk' || meta.index !== index || f.payload.byteLength !== len) throw new StateProtocolError(`bad chunk response for chunk ${index}`)
        const h = await sha256(f.payload)
        if (!equalBytes(h, agreed.chunkHashes.subarray(32 * index, 32 * index + 32))) throw new StateChunkHashError(index, peer)
        bytes.set(f.payload, start)
        chunksByPeer.set(peer, (chunksByPeer.get(peer) ?? 0) + 1)
        remaining--
      } catch (err) {
        queue.push(index)
        opts.signal?.throwIfAborted()
        const code = (err as { code?: string }).code ?? 'ERR_UNKNOWN'
        log.warn('chunk failed', { peer, index, code, error: (err as Error).message })
        const n = (failures.get(peer) ?? 0) + 1
        failures.set(peer, n)
        // a wrong chunk under an agreed hash is proof of a corrupt peer: drop it at once
        if (averagingVerdict(err) === 'reject' || n >= 2) {
          badPeers.push({ peer, reason: code })
          healthy.delete(peer)
          return
        }
      }
    }
  }
  // a chunk put back by a failing worker after the others ran dry is picked up by the next pass;
  // every pass either finishes or drops a peer, so this ends
  while (remaining > 0 && healthy.size > 0) await Promise.all([...healthy].map(worker))
  if (remaining > 0) throw new NoStatePeersError(`${remaining} of ${agreed.chunks} chunks of stage ${opts.stage} could not be fetched from any agreeing peer`)

  // 4. the whole
  const got = await sha256Hex(bytes)
  if (got !== agreed.sha256) throw new StateHashError(agreed.sha256, got)
  log.info('state synced', { stage: opts.stage, version: agreed.version, bytes: agreed.size, peers: agreeing.length, bad: badPeers.length })
  return { version: agreed.version, bytes, sha256: got, agreeing, disagreeing, chunksByPeer, badPeers }
}

async function parseManifest (peer: string, f: Frame, maxBytes: number): Promise<Manifest> {
  const m = f.header.metadata as Record<string, unknown> | undefined
  if (f.header.kind !== 'response' || m?.op !== 'manifest') throw new StateProtocolError('expected a manifest response')
  const { version, size, sha256: sha, chunkBytes, chunks } = m
  if (!Number.isSafeInteger(version) || !Number.isSafeInteger(size) || (size as number) < 0 || (size as number) > maxBytes) throw new StateProtocolError('bad manifest version or size')
  if (typeof sha !== 'string' || !/^[0-9a-f]{64}$/.test(sha)) throw new StateProtocolError('bad manifest sha256')
  if (!Number.isSafeInteger(chunkBytes) || (chunkBytes as number) < 1 || (chunkBytes as number) > 64 * 1024 * 1024) throw new StateProtocolError('bad manifest chunk size')
  if (chunks !== Math.ceil((size as number) / (chunkBytes as number)) || f.payload.byteLength !== 32 * (chunks as number)) throw new StateProtocolError('manifest chunk count and hashes disagree with its size')
  const listHash = await sha256Hex(f.payload)
  return {
    peer, version: version as number, size: size as number, sha256: sha, chunkBytes: chunkBytes as number, chunks: chunks as number,
    chunkHashes: f.payload, key: `${version as number}|${size as number}|${sha}|${chunkBytes as number}|${listHash}`
  }
}

function equalBytes (a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false
  return true
}
