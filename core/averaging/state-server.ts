// State sync, the serving side (/layerswarm/state-sync/1.0.0; the protocol and the joiner's side are
// described in state-sync.ts): every serving node answers manifests and chunks of its live state of
// its stage and of its agreed snapshot (the parameters it wrote back after its last averaging round
// in which every shard arrived). A snapshot is prepared once (hashes of the whole and of every chunk)
// and kept while its version is the one served; the agreed version it replaced stays servable for
// chunks a while longer (SUPERSEDED_TTL_MS). A joiner across slow links reads the manifest, then its chunks a
// few round trips later: on 400 ms links the donors had finished the next averaging round in between,
// refused every chunk of the version they had just announced (ERR_STATE_VERSION), and the joiner fell
// back to one peer's unchecked live state (docs/networks.md, "Across slow links").
import type { Libp2p } from '@libp2p/interface'
import type { Logger } from '../contracts/logger.ts'
import { handleFramed, type FramedStream } from '../wire/index.ts'
import { hashChunksAsync, hashHexAsync } from '../verify/digest.ts'
import { StateProtocolError, StateVersionError, NoStatePeersError } from './errors.ts'

export const STATE_SYNC_PROTOCOL = '/layerswarm/state-sync/1.0.0'
export const DEFAULT_STATE_CHUNK_BYTES = 4 * 1024 * 1024
/** How long a replaced version's chunks stay servable (ms): a joiner's manifest-to-chunks time across slow links, with margin. */
export const SUPERSEDED_TTL_MS = 60_000
/** Most group members an agreed manifest lists; a larger group goes unlisted (nobody can be judged against it). */
export const MAX_GROUP_LISTED = 64

export interface StateSnapshot {
  /** What peers agree on, e.g. the averaging round after which the state was taken. */
  readonly version: number
  readonly bytes: Uint8Array
}

/** The parameters a node wrote back after its last averaging round in which every shard arrived. */
export interface AgreedSnapshot extends StateSnapshot {
  /** `version` is the round. The digest of the parameters in `bytes` (core/verify/params-digest.ts). */
  readonly digest: string
  /** The round's group (the averager's sorted member ids). */
  readonly group: readonly string[]
  /** The round's mode: after a `params` round every member holds the same bits by construction. */
  readonly mode: string
}

/** SHA-256 of bytes, 64 hex (the state's and its chunk list's hash). */
export const sha256Hex = hashHexAsync

/** Which of a node's states a request names. */
export type Of = 'live' | 'agreed'

// ---- serving ----------------------------------------------------------------------------------

export interface StateServerInit {
  readonly runId: string
  /** The state this node serves for `stage` now, or undefined when it has none (not synced yet, other stage). */
  readonly snapshot: (stage: number) => StateSnapshot | undefined | Promise<StateSnapshot | undefined>
  /** Its agreed snapshot of `stage` (see the top of this file), or undefined (no clean round yet). */
  readonly agreed?: (stage: number) => AgreedSnapshot | undefined | Promise<AgreedSnapshot | undefined>
  readonly chunkBytes?: number
  readonly log?: Logger
  /** Admission (PeerJudge.admit): run before serving a peer; throws when it may not sync from here. */
  readonly admit?: (peer: string, signal: AbortSignal) => Promise<void>
  /** Fault injection for tests and drills: replaces the bytes of a served chunk. */
  readonly faults?: { readonly chunk?: (index: number, bytes: Uint8Array) => Uint8Array }
}

interface Prepared {
  version: number
  bytes: Uint8Array
  sha256: string
  chunkHashes: Uint8Array
  chunkBytes: number
  /** The agreed manifest's extra fields. */
  agreed?: { of: 'agreed', digest: string, group: string[], mode: string }
}

type ServerLibp2p = Pick<Libp2p, 'handle' | 'unhandle'>

export class StateServer {
  private readonly chunkBytes: number
  /** Per `${of}/${stage}`. */
  private readonly prepared = new Map<string, Promise<Prepared>>()
  /** Per `${of}/${stage}`: the version `prepared` replaced, and until when its chunks are served. */
  private readonly superseded = new Map<string, { p: Prepared, until: number }>()
  private started = false

  constructor (private readonly libp2p: ServerLibp2p, private readonly init: StateServerInit) {
    this.chunkBytes = init.chunkBytes ?? DEFAULT_STATE_CHUNK_BYTES
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await handleFramed(this.libp2p, STATE_SYNC_PROTOCOL, async (fs, _conn, signal) => { await this.serve(fs, signal) }, {
      runId: this.init.runId,
      timeoutMs: 60_000,
      log: this.init.log,
      limits: { maxPayloadBytes: Math.max(this.chunkBytes, 1024 * 1024) },
      admit: this.init.admit
    })
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    await this.libp2p.unhandle(STATE_SYNC_PROTOCOL).catch(() => {})
  }

  /** Hashes of the current snapshot of `stage`, computed once per version. */
  private async prepare (stage: number, of: Of): Promise<Prepared> {
    const snap = of === 'agreed' ? await this.init.agreed?.(stage) : await this.init.snapshot(stage)
    if (snap == null) throw new NoStatePeersError(`no ${of === 'agreed' ? 'agreed ' : ''}state for stage ${stage} here`)
    const key = `${of}/${stage}`
    const cached = this.prepared.get(key)
    if (cached != null) {
      const p = await cached
      if (p.version === snap.version && p.bytes === snap.bytes) return p
      // agreed snapshots only: one per averaging round, a copy the joiner can check against a majority;
      // live state changes every step, and a joiner takes whichever version most peers report
      if (of === 'agreed' && p.version !== snap.version) this.superseded.set(key, { p, until: Date.now() + SUPERSEDED_TTL_MS })
    }
    const work = (async (): Promise<Prepared> => {
      const chunks = Math.ceil(snap.bytes.byteLength / this.chunkBytes)
      const chunkHashes = new Uint8Array(32 * chunks)
      for (let i = 0; i < chunks; i++) chunkHashes.set(await hashChunksAsync([snap.bytes.subarray(i * this.chunkBytes, (i + 1) * this.chunkBytes)]), 32 * i)
      const a = of === 'agreed' ? snap as AgreedSnapshot : undefined
      return {
        version: snap.version, bytes: snap.bytes, sha256: await sha256Hex(snap.bytes), chunkHashes, chunkBytes: this.chunkBytes,
        ...(a != null ? { agreed: { of: 'agreed' as const, digest: a.digest, group: a.group.length <= MAX_GROUP_LISTED ? [...a.group] : [], mode: a.mode } } : {})
      }
    })()
    this.prepared.set(key, work)
    return await work
  }

  private async serve (fs: FramedStream, signal: AbortSignal): Promise<void> {
    const req = await fs.expect({ signal })
    const m = req.header.metadata as { op?: unknown, version?: unknown, index?: unknown, of?: unknown } | undefined
    if (req.header.kind !== 'request' || m == null) throw new StateProtocolError('expected a request frame with metadata')
    if (m.of !== undefined && m.of !== 'agreed') throw new StateProtocolError(`unknown state ${String(m.of)}`)
    const stage = req.header.stage
    const of: Of = m.of === 'agreed' ? 'agreed' : 'live'
    let p = await this.prepare(stage, of)
    if (m.op === 'manifest') {
      await fs.send({
        kind: 'response', stage,
        metadata: { op: 'manifest', version: p.version, size: p.bytes.byteLength, sha256: p.sha256, chunkBytes: p.chunkBytes, chunks: p.chunkHashes.byteLength / 32, ...p.agreed }
      }, p.chunkHashes, { signal })
      return
    }
    if (m.op !== 'chunk' || !Number.isSafeInteger(m.version) || !Number.isSafeInteger(m.index)) throw new StateProtocolError('bad state-sync request')
    if (m.version !== p.version) {
      const old = this.superseded.get(`${of}/${stage}`)
      if (old == null || old.p.version !== m.version || Date.now() > old.until) throw new StateVersionError(`version ${String(m.version)} is not served here (now ${p.version})`)
      p = old.p
    }
    const index = m.index as number
    const chunks = p.chunkHashes.byteLength / 32
    if (index < 0 || index >= chunks) throw new StateProtocolError(`chunk ${index} out of 0..${chunks - 1}`)
    let bytes = p.bytes.subarray(index * p.chunkBytes, Math.min((index + 1) * p.chunkBytes, p.bytes.byteLength))
    if (this.init.faults?.chunk != null) bytes = this.init.faults.chunk(index, bytes.slice())
    await fs.send({ kind: 'response', stage, metadata: { op: 'chunk', index } }, bytes, { signal })
  }
}

// ---- joining ----------------------------------------------------------------------------------

