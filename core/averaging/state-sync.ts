// State sync: a node joining a stage downloads the stage's state (weights, outer momentum,
// optimizer state: bytes from state-format.ts) from several stage peers at once, and serves nothing
// before the bytes check out.
//
// Protocol /layerswarm/state-sync/1.0.0, one request/response per stream (core/wire frames):
//   request  {op: "manifest", stage [, of: "agreed"]} -> response {op, version, size, sha256, chunkBytes, chunks
//                                                        [, of: "agreed", digest, group, mode]}
//                                                        payload: sha256 of every chunk, 32 bytes each
//   request  {op: "chunk", stage, version, index [, of: "agreed"]} -> response payload: the chunk's bytes
//   error frame: no state for the stage (ERR_STATE_NO_PEERS), that version no longer served
//   (ERR_STATE_VERSION), a bad request (ERR_STATE_PROTOCOL)
//
// A node serves two states of its stage: its live state (what it holds now; differs between peers
// between averaging rounds) and, `of: "agreed"`, the parameters it wrote back after its last
// averaging round in which every shard arrived: bit-identical on every such member of that round's
// group, so a joiner can ask a majority to vouch for them (the round as version, `digest` the
// parameters' digest, core/verify/params-digest.ts; `group` the round's members; `mode` the round's).
//
// syncState (live or any state): asks every candidate peer for its manifest, takes the newest
// version that at least `minAgree` peers (2 by default, 1 when only one answered) report with one
// identical (sha256, size, chunk hashes), and that is backed by a strict majority of the peers
// reporting that version. syncAgreedState (the agreed snapshot): asks every peer in parallel under
// a deadline, takes the manifest a strict majority of the peers that answered report identically
// (and at least 2 of them when 2 or more were asked), and names as evidence a peer that reports
// other parameters for the same round of a `params` round while the majority lists it in that
// round's group, or while it names a group that overlaps the majority's (it must hold the same
// bits). Either way chunks are then fetched in parallel, one worker per agreeing peer
// pulling the next index from a shared queue (so different ranges come from different peers, fast
// peers serve more). Each chunk is checked against its agreed hash on arrival: a peer that serves a
// bad chunk is reported and dropped, the chunk is fetched again elsewhere. The assembled bytes are
// checked against the agreed sha256 before they are returned.
//
// Deadlines follow each peer's measured link (core/net/peer-timing.ts): a chunk request waits
// clamp(srtt + 4 rttvar + chunk bytes / throughput, 5 s, 120 s), a manifest request the same rule
// within [5 s, 30 s]; every chunk that arrives is a throughput sample. `requestTimeoutMs` fixes them.
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p } from '@libp2p/interface'
import type { Logger } from '../contracts/logger.ts'
import { silentLogger } from '../logger.ts'
import { type Verdict, verdictOf } from '../errors.ts'
import { sleep } from '../timers.ts'
import { timingFor, type DeadlineBounds, type PeerTiming } from '../net/peer-timing.ts'
import { RemoteError, requestFrame, type Frame } from '../wire/index.ts'
import {
  NoStatePeersError, StateAgreementError, StateChunkHashError, StateConflictError, StateHashError, StateProtocolError
} from './errors.ts'
import {
  MAX_GROUP_LISTED, sha256Hex, STATE_SYNC_PROTOCOL, type Of
} from './state-server.ts'
import { hashChunksAsync } from '../verify/digest.ts'

/** Largest state a joiner accepts by default (bytes). */
export const DEFAULT_MAX_STATE_BYTES = 8 * 1024 ** 3

export interface SyncStateOptions {
  readonly runId: string
  readonly stage: number
  /** Peers that agree on one hash needed before trusting it (when that many answered). Default 2. */
  readonly minAgree?: number
  /** A fixed deadline per request (ms). Default: the peer-timing rule (see the top of this file). */
  readonly requestTimeoutMs?: number
  /** Per-peer round trips and throughputs. Default: the libp2p node's (timingFor). */
  readonly timing?: PeerTiming
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

export interface SyncAgreedOptions extends Omit<SyncStateOptions, 'minAgree'> {
  /** Deadline for every peer's manifest (ms): a peer silent by then has not answered. Default 5 s. */
  readonly manifestTimeoutMs?: number
  /**
   * No manifest has a majority and the answers name different rounds (a round was being written
   * back as we asked): ask once more after this pause (ms). 0: never. Default 2000.
   */
  readonly splitRetryMs?: number
}

export interface SyncAgreedResult extends SyncStateResult {
  /** The parameters' digest the majority vouched for (check it against the parameters in `bytes`). */
  readonly digest: string
  /** The agreed round's group and mode, as the majority reported them. */
  readonly group: readonly string[]
  readonly mode: string
  /** Peers that answered: an agreed manifest, "none here", or a reply that breaks the protocol. */
  readonly answered: number
  /** Peers caught misbehaving by their own bytes (reject verdicts: a bad manifest or chunk): codes. */
  readonly evidence: ReadonlyArray<{ peer: string, code: string }>
  /**
   * Peers whose claim contradicts the majority's (StateConflictError): the same `params` round, and a
   * member of the majority's group or naming a group that overlaps it, with other parameters. Only
   * the majority's word says so: judge them once the agreed state checked out.
   */
  readonly conflicting: ReadonlyArray<{ peer: string, code: string }>
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
  agreed?: { digest: string, group: string[], mode: string }
}

/** A peer dropped from a sync, with the code of its failure and that failure's verdict. */
interface Bad { peer: string, reason: string, verdict: Verdict }

/** Manifests of one poll; who answered it has no such state; who failed (and how). */
interface Poll { manifests: Manifest[], none: string[], bad: Bad[] }

type SyncLibp2p = Pick<Libp2p, 'dialProtocol'>
type Request = (peer: string, metadata: Record<string, unknown>, maxPayloadBytes: number, timeoutMs?: number) => Promise<Frame>

/** Deadline bounds of a chunk request and of a manifest request (ms). */
export const CHUNK_DEADLINE: DeadlineBounds = { floorMs: 5000, ceilingMs: 120_000 }
export const MANIFEST_DEADLINE: DeadlineBounds = { floorMs: 5000, ceilingMs: 30_000 }

function requester (libp2p: SyncLibp2p, opts: SyncStateOptions): Request {
  const timing = opts.timing ?? timingFor(libp2p)
  return async (peer, metadata, maxPayloadBytes, t) => {
    const chunk = metadata.op === 'chunk'
    const timeoutMs = t ?? opts.requestTimeoutMs ?? timing.deadline(peer, maxPayloadBytes, chunk ? CHUNK_DEADLINE : MANIFEST_DEADLINE)
    const t0 = performance.now()
    const f = await requestFrame(libp2p, peerIdFromString(peer), STATE_SYNC_PROTOCOL, { kind: 'request', stage: opts.stage, metadata }, undefined,
      { runId: opts.runId, timeoutMs, signal: opts.signal, limits: { maxPayloadBytes: Math.max(1024, maxPayloadBytes) } })
    if (chunk) timing.observeTransfer(peer, f.payload.byteLength, performance.now() - t0)
    return f
  }
}

const codeOf = (err: unknown): string => (err as { code?: string }).code ?? 'ERR_UNKNOWN'

/** Every peer's manifest of state `of`, in parallel. */
async function poll (request: Request, peers: readonly string[], of: Of, opts: SyncStateOptions, log: Logger, timeoutMs?: number): Promise<Poll> {
  const maxBytes = opts.maxStateBytes ?? DEFAULT_MAX_STATE_BYTES
  const out: Poll = { manifests: [], none: [], bad: [] }
  await Promise.all(peers.map(async peer => {
    try {
      const f = await request(peer, { op: 'manifest', ...(of === 'agreed' ? { of } : {}) }, 32 * Math.ceil(maxBytes / 65536), timeoutMs)
      out.manifests.push(await parseManifest(peer, f, maxBytes, of))
    } catch (err) {
      log.debug('no manifest', { peer, of, error: (err as Error).message })
      if (err instanceof RemoteError && err.remoteCode === 'ERR_STATE_NO_PEERS') out.none.push(peer)
      else out.bad.push({ peer, reason: codeOf(err), verdict: verdictOf(err) })
    }
  }))
  opts.signal?.throwIfAborted()
  return out
}

function byKey (manifests: readonly Manifest[]): Manifest[][] {
  const groups = new Map<string, Manifest[]>()
  for (const m of manifests) groups.set(m.key, [...(groups.get(m.key) ?? []), m])
  return [...groups.values()]
}

const summary = (ms: readonly Manifest[]): string => ms.map(m => `${m.peer.slice(-6)}:v${m.version}:${m.sha256.slice(0, 8)}`).join(', ')

/** Downloads and verifies a stage's state from `peers` (see the top of this file). */
export async function syncState (libp2p: SyncLibp2p, peers: readonly string[], opts: SyncStateOptions): Promise<SyncStateResult> {
  const log = (opts.log ?? silentLogger).forComponent('layerswarm:state-sync')
  const request = requester(libp2p, opts)

  // 1. manifests
  const { manifests, bad } = await poll(request, [...new Set(peers)], 'live', opts, log)
  const badPeers = bad.filter(b => b.verdict === 'reject')
  if (manifests.length === 0) throw new NoStatePeersError(`none of ${peers.length} peers served state for stage ${opts.stage}`)

  // 2. agreement: newest version backed by enough peers and by a strict majority of that version's reporters
  const need = Math.min(opts.minAgree ?? 2, manifests.length)
  const candidates = byKey(manifests).filter(g => g.length >= need).sort((a, b) => b[0].version - a[0].version || b.length - a.length)
  const chosen = candidates[0]
  if (chosen == null) throw new StateAgreementError(`no state of stage ${opts.stage} is reported identically by ${need} peers (${summary(manifests)})`)
  const sameVersion = manifests.filter(m => m.version === chosen[0].version)
  if (2 * chosen.length <= sameVersion.length) throw new StateAgreementError(`peers disagree on version ${chosen[0].version} of stage ${opts.stage}: no hash has a majority`)
  const agreed = chosen[0]
  const agreeing = chosen.map(m => m.peer)
  const disagreeing = manifests.filter(m => m.key !== agreed.key).map(m => ({ peer: m.peer, version: m.version, sha256: m.sha256 }))

  // 3. chunks, 4. the whole
  const { bytes, chunksByPeer } = await download(request, agreed, agreeing, 'live', opts, badPeers, log)
  log.info('state synced', { stage: opts.stage, version: agreed.version, bytes: agreed.size, peers: agreeing.length, bad: badPeers.length })
  return { version: agreed.version, bytes, sha256: agreed.sha256, agreeing, disagreeing, chunksByPeer, badPeers: badPeers.map(({ peer, reason }) => ({ peer, reason })) }
}

/**
 * Downloads the stage's agreed snapshot: the one a strict majority of the peers that answered
 * vouch for (see the top of this file); StateAgreementError when none has one. The caller checks
 * the parameters in `bytes` against `digest` and judges the `evidence`.
 */
export async function syncAgreedState (libp2p: SyncLibp2p, peers: readonly string[], opts: SyncAgreedOptions): Promise<SyncAgreedResult> {
  const log = (opts.log ?? silentLogger).forComponent('layerswarm:state-sync')
  const request = requester(libp2p, opts)
  const asked = [...new Set(peers)]
  const ask = async (): Promise<Poll> => await poll(request, asked, 'agreed', opts, log, opts.manifestTimeoutMs ?? 5000)
  let answers = await ask()
  let chosen = majority(answers, asked.length)
  const retryMs = opts.splitRetryMs ?? 2000
  if (chosen == null && retryMs > 0 && new Set(answers.manifests.map(m => m.version)).size > 1) {
    log.info('agreed state split over rounds: asking again', { stage: opts.stage, manifests: summary(answers.manifests) })
    await sleep(retryMs, opts.signal)
    answers = await ask()
    chosen = majority(answers, asked.length)
  }
  const { manifests, none, bad } = answers
  const answered = answeredBy(answers)
  if (chosen == null) {
    throw new StateAgreementError(`no agreed state of stage ${opts.stage} has a majority of the ${answered} peers that answered (of ${asked.length} asked; ` +
      `${none.length} have none; ${summary(manifests)})`)
  }
  const agreed = chosen[0]
  const { digest, group, mode } = agreed.agreed as NonNullable<Manifest['agreed']>
  const agreeing = chosen.map(m => m.peer)
  const disagreeing = manifests.filter(m => m.key !== agreed.key)
  const dropped = bad.filter(b => b.verdict === 'reject')
  // the same round, and a member of the group the majority names, or naming a group that overlaps it
  // (one round's groups that completed are identical or disjoint): it had to hold the same bits
  // (params mode: by construction; a pseudo-grad round's result also depends on each member's outer state)
  const conflicting = disagreeing.filter(m => {
    const claimed = (m.agreed as NonNullable<Manifest['agreed']>).group
    return m.version === agreed.version && mode === 'params' && (group.includes(m.peer) || claimed.some(p => group.includes(p)))
  }).map(m => ({ peer: m.peer, code: new StateConflictError(m.peer, m.version).code }))
  const { bytes, chunksByPeer } = await download(request, agreed, agreeing, 'agreed', opts, dropped, log)
  const evidence = dropped.filter(b => b.verdict === 'reject')
  log.info('agreed state synced', { stage: opts.stage, round: agreed.version, bytes: agreed.size, agreeing: agreeing.length, answered, asked: asked.length, evidence: evidence.length, conflicting: conflicting.length })
  return {
    version: agreed.version, bytes, sha256: agreed.sha256, agreeing, chunksByPeer, digest, group, mode, answered,
    disagreeing: disagreeing.map(m => ({ peer: m.peer, version: m.version, sha256: m.sha256 })),
    badPeers: dropped.map(({ peer, reason }) => ({ peer, reason })),
    evidence: evidence.map(({ peer, reason }) => ({ peer, code: reason })),
    conflicting
  }
}

/** Peers that answered a poll: with a manifest, "none here", or a reply that breaks the protocol. */
function answeredBy (p: Poll): number {
  return p.manifests.length + p.none.length + p.bad.filter(b => b.verdict === 'reject').length
}

/** The manifests a strict majority of the peers that answered report identically, at least 2 of them when 2 or more were asked. */
function majority (p: Poll, asked: number): Manifest[] | undefined {
  const best = byKey(p.manifests).sort((a, b) => b.length - a.length)[0]
  if (best == null) return undefined
  return best.length >= Math.min(2, asked) && 2 * best.length > answeredBy(p) ? best : undefined
}

/**
 * Chunks in parallel from the agreeing peers, each verified on arrival, then the whole against the
 * agreed sha256. A peer failing is added to `bad` (with its failure's verdict) and dropped.
 */
async function download (request: Request, agreed: Manifest, agreeing: readonly string[], of: Of, opts: SyncStateOptions, bad: Bad[], log: Logger):
Promise<{ bytes: Uint8Array, chunksByPeer: Map<string, number> }> {
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
        const f = await request(peer, { op: 'chunk', version: agreed.version, index, ...(of === 'agreed' ? { of } : {}) }, agreed.chunkBytes)
        const meta = f.header.metadata as { op?: unknown, index?: unknown } | undefined
        if (f.header.kind !== 'response' || meta?.op !== 'chunk' || meta.index !== index || f.payload.byteLength !== len) throw new StateProtocolError(`bad chunk response for chunk ${index}`)
        const h = await hashChunksAsync([f.payload])
        if (!equalBytes(h, agreed.chunkHashes.subarray(32 * index, 32 * index + 32))) throw new StateChunkHashError(index, peer)
        bytes.set(f.payload, start)
        chunksByPeer.set(peer, (chunksByPeer.get(peer) ?? 0) + 1)
        remaining--
      } catch (err) {
        queue.push(index)
        opts.signal?.throwIfAborted()
        const code = codeOf(err)
        log.warn('chunk failed', { peer, index, code, error: (err as Error).message })
        const n = (failures.get(peer) ?? 0) + 1
        failures.set(peer, n)
        // a wrong chunk under an agreed hash is proof of a corrupt peer: drop it at once
        const verdict = verdictOf(err)
        if (verdict === 'reject' || n >= 2) {
          bad.push({ peer, reason: code, verdict })
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
  const got = await sha256Hex(bytes)
  if (got !== agreed.sha256) throw new StateHashError(agreed.sha256, got)
  return { bytes, chunksByPeer }
}

async function parseManifest (peer: string, f: Frame, maxBytes: number, of: Of): Promise<Manifest> {
  const m = f.header.metadata as Record<string, unknown> | undefined
  if (f.header.kind !== 'response' || m?.op !== 'manifest') throw new StateProtocolError('expected a manifest response')
  const { version, size, sha256: sha, chunkBytes, chunks } = m
  if (!Number.isSafeInteger(version) || !Number.isSafeInteger(size) || (size as number) < 0 || (size as number) > maxBytes) throw new StateProtocolError('bad manifest version or size')
  if (typeof sha !== 'string' || !/^[0-9a-f]{64}$/.test(sha)) throw new StateProtocolError('bad manifest sha256')
  if (!Number.isSafeInteger(chunkBytes) || (chunkBytes as number) < 1 || (chunkBytes as number) > 64 * 1024 * 1024) throw new StateProtocolError('bad manifest chunk size')
  if (chunks !== Math.ceil((size as number) / (chunkBytes as number)) || f.payload.byteLength !== 32 * (chunks as number)) throw new StateProtocolError('manifest chunk count and hashes disagree with its size')
  const agreed = of === 'agreed' ? parseAgreed(peer, m) : undefined
  const listHash = await sha256Hex(f.payload)
  return {
    peer, version: version as number, size: size as number, sha256: sha, chunkBytes: chunkBytes as number, chunks: chunks as number,
    chunkHashes: f.payload, ...(agreed != null ? { agreed } : {}),
    key: `${version as number}|${size as number}|${sha}|${chunkBytes as number}|${listHash}` + (agreed != null ? `|${agreed.digest}|${agreed.mode}|${agreed.group.join(',')}` : '')
  }
}

/** The agreed manifest's fields: its digest, group and mode are part of what the majority must report identically. */
function parseAgreed (peer: string, m: Record<string, unknown>): NonNullable<Manifest['agreed']> {
  const { of, digest, group, mode } = m
  if (of !== 'agreed') throw new StateProtocolError('expected an agreed manifest')
  if (typeof digest !== 'string' || !/^[0-9a-f]{64}$/.test(digest)) throw new StateProtocolError('bad agreed digest')
  if (!Array.isArray(group) || group.length > MAX_GROUP_LISTED || !group.every(p => typeof p === 'string' && p.length <= 128)) throw new StateProtocolError('bad agreed group')
  // a member reports its own group (empty: too large to list)
  if (group.length > 0 && !group.includes(peer)) throw new StateProtocolError('the agreed group does not list the peer that reports it')
  if (typeof mode !== 'string' || mode.length > 32) throw new StateProtocolError('bad agreed mode')
  return { digest, group: group as string[], mode }
}

function equalBytes (a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false
  return true
}
