// A stage's state between nodes: the runtime's side of state sync (core/averaging/state-sync.ts),
// used by the StageHost (stage-host.ts). What a serving node offers, and what a joining node accepts.
//
//   offer    live: this node's parameters, AdamW moments and step now (state tensors `param/<name>`,
//            `adam.m/<name>`, `adam.v/<name>`; version = AdamW's update count).
//            agreed: the parameters its last averaging round in which every shard arrived wrote back
//            (StageAveraging's onAgreed): `param/<name>` only, version = the round, step = the
//            round's swarm step, digest = paramsDigest (core/verify) of those parameters. Every member
//            of that round holds the same bits, so the stage's peers can vouch for them.
//   join     fetchStageState(peers): with 2 or more serving peers, the agreed snapshot a strict
//            majority of the peers that answered report (syncAgreedState), whose parameters must fit
//            the layout, hash to the agreed digest and be finite. AdamW moments start at zero (and its
//            bias-correction count at 0): peers cannot agree on them, and finite moments from one
//            donor can still wreck the joiner (a huge v freezes it for hundreds of steps, a tiny v
//            under a large m blows it up). Without a majority (the stage never averaged; a stage
//            larger than one group; one serving peer), the live state of one peer, best first, that
//            fits and is finite (the state before issue 13, plus the checks), logged as unchecked.
//   judge    evidence from the sync (a chunk against the agreed hash, a bad manifest); once the agreed
//            state checked out, a peer that claims other parameters for its round and group (only
//            the majority's word says so: a majority found lying convicts nobody else); a majority
//            that vouched for parameters that are not finite or do not hash to their digest; a live
//            state that is not finite: PeerJudge.record(reject, area 'state-sync'), once per peer
//            and fetch.
import type { Libp2p } from '@libp2p/interface'
import type { Logger } from '../contracts/logger.ts'
import { AbortError, LayerswarmError, verdictOf } from '../errors.ts'
import {
  parseState, serializeState, StateDigestError, syncAgreedState, syncState, type AgreedSnapshot, type SyncAgreedResult
} from '../averaging/index.ts'
import { validateModelConfig } from '../model/config.ts'
import { numel, stageParamSpecs, type ParamSpec } from '../model/params.ts'
import { stageLayouts } from '../model/stage-split.ts'
import type { AgreedRound } from '../pipeline/stage-averaging.ts'
import type { PeerJudge } from '../peer-judge.ts'
import type { RunManifest } from '../run/manifest.ts'
import { paramsDigestAsync } from '../verify/params-digest.ts'
import { findNonFinite, nonFiniteAt } from '../wire/finite.ts'
import { StageStateMismatchError } from './runtime-errors.ts'

export interface FetchedState {
  readonly params: Map<string, Float32Array>
  readonly optimizer: { step: number, m: Map<string, Float32Array>, v: Map<string, Float32Array> }
  /** The swarm step behind the parameters. */
  readonly step: number
  /** Where it came from, for logs and errors: a peer, or the agreeing peers. */
  readonly peer: string
}

export interface FetchStageStateInit {
  readonly libp2p: Pick<Libp2p, 'dialProtocol'>
  readonly runId: string
  readonly manifest: RunManifest
  readonly stage: number
  /** The stage's serving peers, best first (the membership view's). */
  readonly peers: readonly string[]
  readonly judge: PeerJudge
  readonly signal: AbortSignal
  readonly log: Logger
  /** Deadline for every peer's agreed manifest (ms). Default 5000. */
  readonly manifestTimeoutMs?: number
  /** Deadline per request otherwise (ms). Default 15000. */
  readonly requestTimeoutMs?: number
}

/** The stage's state from its serving peers (see the top of this file), or undefined: start from the seeded init. */
export async function fetchStageState (c: FetchStageStateInit): Promise<FetchedState | undefined> {
  const convicted = new Set<string>()
  if (c.peers.length >= 2) {
    const agreed = await fetchAgreed(c, convicted)
    if (agreed != null) return agreed
  }
  return await fetchLive(c, convicted)
}

function convict (c: FetchStageStateInit, convicted: Set<string>, peer: string, code: string): void {
  if (convicted.has(peer)) return
  convicted.add(peer)
  c.judge.record({ peer, verdict: 'reject', area: 'state-sync', code, stage: c.stage })
  c.log.warn('state-sync donor judged', { stage: c.stage, peer, code })
}

async function fetchAgreed (c: FetchStageStateInit, convicted: Set<string>): Promise<FetchedState | undefined> {
  const { stage, signal, log } = c
  let r: SyncAgreedResult
  try {
    r = await syncAgreedState(c.libp2p, c.peers, {
      runId: c.runId, stage, manifestTimeoutMs: c.manifestTimeoutMs ?? 5000, requestTimeoutMs: c.requestTimeoutMs ?? 15_000, signal, log
    })
  } catch (err) {
    if (signal.aborted) throw new AbortError('the move was abandoned')
    log.warn('no agreed state of the stage: falling back to one peer\'s unchecked live state', { stage, peers: c.peers.length, code: (err as LayerswarmError).code, error: (err as Error).message })
    return undefined
  }
  for (const e of r.evidence) convict(c, convicted, e.peer, e.code)
  const from = `the ${r.agreeing.length} peers agreeing on round ${r.version}`
  try {
    const state = parseState(r.bytes)
    const specs = stageSpecs(c.manifest, stage)
    const params = new Map<string, Float32Array>()
    for (const [name, t] of state.tensors) {
      if (!name.startsWith('param/')) throw new StageStateMismatchError(stage, from, `unexpected tensor ${name} in an agreed state`)
      params.set(name.slice('param/'.length), t)
    }
    const fetched = { params, optimizer: { step: 0, m: zerosLike(specs), v: zerosLike(specs) }, step: state.step }
    checkFits(specs, stage, from, fetched)
    const digest = await paramsDigestAsync(params, specs)
    if (digest !== r.digest) throw new StateDigestError(r.digest, digest)
    checkFinite(fetched.params, 'parameter')
    for (const e of r.conflicting) convict(c, convicted, e.peer, e.code)
    log.info('agreed stage state fetched', { stage, round: r.version, step: state.step, agreeing: r.agreeing.length, answered: r.answered, asked: c.peers.length, digest })
    return { ...fetched, peer: from }
  } catch (err) {
    if (signal.aborted) throw new AbortError('the move was abandoned')
    // every agreeing peer vouched for these bytes: a verdict on them is a verdict on each
    const code = (err as LayerswarmError).code ?? 'ERR_UNKNOWN'
    if (verdictOf(err) === 'reject') for (const peer of r.agreeing) convict(c, convicted, peer, code)
    log.warn('the agreed stage state does not check out: falling back to one peer\'s unchecked live state', { stage, code, error: (err as Error).message })
    return undefined
  }
}

/** One peer's live state at a time (they differ between rounds: nothing to compare), best first, skipping the convicted. */
async function fetchLive (c: FetchStageStateInit, convicted: Set<string>): Promise<FetchedState | undefined> {
  const { stage, signal, log, peers } = c
  for (const peer of peers.filter(p => !convicted.has(p)).slice(0, 3)) {
    try {
      const r = await syncState(c.libp2p, [peer], { runId: c.runId, stage, minAgree: 1, requestTimeoutMs: c.requestTimeoutMs ?? 15_000, signal, log })
      const state = parseState(r.bytes)
      const fetched = splitState(state.tensors, state.version, state.step)
      checkFits(stageSpecs(c.manifest, stage), stage, peer, fetched)
      checkFinite(fetched.params, 'parameter')
      checkFinite(fetched.optimizer.m, 'adam.m')
      checkFinite(fetched.optimizer.v, 'adam.v')
      checkNonNegative(stage, peer, fetched.optimizer.v)
      log.warn('stage state fetched from one peer, unchecked by any other (no agreed state)', { stage, peer, step: fetched.step, bytes: r.bytes.byteLength, peers: peers.length })
      return { ...fetched, peer }
    } catch (err) {
      if (signal.aborted) throw new AbortError('the move was abandoned')
      const code = (err as LayerswarmError).code ?? 'ERR_UNKNOWN'
      if (verdictOf(err) === 'reject') convict(c, convicted, peer, code)
      log.warn('stage state not fetched from peer', { stage, peer, code, error: (err as Error).message })
    }
  }
  log.info(peers.length === 0 ? 'no peer serves the stage: starting from the seeded init' : 'no stage peer gave its state: starting from the seeded init', { stage, peers: peers.length })
  return undefined
}

/** The stage's parameter specs (names, shapes) under the run manifest. */
function stageSpecs (m: RunManifest, stage: number): ParamSpec[] {
  return stageParamSpecs(stageLayouts(validateModelConfig(m.model), m.stages.count, m.bottleneck ?? 0)[stage])
}

function zerosLike (specs: readonly ParamSpec[]): Map<string, Float32Array> {
  return new Map(specs.map(s => [s.name, new Float32Array(numel(s.shape))]))
}

/** Every parameter and moment of the stage, each of the right size (a missing one would silently take the init). */
function checkFits (specs: readonly ParamSpec[], stage: number, peer: string, f: Omit<FetchedState, 'peer'>): void {
  for (const s of specs) {
    for (const [what, map] of [['parameter', f.params], ['adam.m', f.optimizer.m], ['adam.v', f.optimizer.v]] as const) {
      const t = map.get(s.name)
      if (t == null) throw new StageStateMismatchError(stage, peer, `${what} ${s.name} is missing`)
      if (t.length !== numel(s.shape)) throw new StageStateMismatchError(stage, peer, `${what} ${s.name} has ${t.length} values, expected ${numel(s.shape)}`)
    }
  }
  if (f.params.size !== specs.length) throw new StageStateMismatchError(stage, peer, `${f.params.size} parameters, expected ${specs.length}`)
}

/** NonFiniteError (verdict reject) naming the first NaN/Inf. */
function checkFinite (tensors: ReadonlyMap<string, Float32Array>, what: string): void {
  for (const [name, t] of tensors) {
    const i = findNonFinite(t)
    if (i >= 0) throw nonFiniteAt(`${what} ${name} of the fetched state`, t, i)
  }
}

/** A negative second moment turns AdamW's sqrt(v) into NaN at the first step. */
function checkNonNegative (stage: number, peer: string, v: ReadonlyMap<string, Float32Array>): void {
  for (const [name, t] of v) {
    const i = t.findIndex(x => x < 0)
    if (i >= 0) throw new StageStateMismatchError(stage, peer, `adam.v ${name} is negative (${t[i]}) at element ${i}`)
  }
}

/** What a serving node offers as its agreed snapshot (see the top of this file). */
export async function agreedSnapshot (stage: number, a: AgreedRound, specs: readonly ParamSpec[]): Promise<AgreedSnapshot> {
  const params = new Map<string, Float32Array>()
  let o = 0
  for (const s of specs) {
    const n = numel(s.shape)
    params.set(s.name, a.params.subarray(o, o + n))
    o += n
  }
  if (o !== a.params.length) throw new StageStateMismatchError(stage, 'this node', `the round's vector holds ${a.params.length} values, the stage ${o}`)
  const tensors = new Map([...params].map(([k, t]) => [`param/${k}`, t]))
  return {
    version: a.round,
    bytes: serializeState({ version: a.round, step: a.step, tensors }),
    digest: await paramsDigestAsync(params, specs),
    group: a.group,
    mode: a.mode
  }
}

// State tensor names: `param/<name>`, `adam.m/<name>`, `adam.v/<name>`; version = AdamW's update count.
export function joinState (params: Map<string, Float32Array>, m: Map<string, Float32Array>, v: Map<string, Float32Array>): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>()
  for (const [k, t] of params) out.set(`param/${k}`, t)
  for (const [k, t] of m) out.set(`adam.m/${k}`, t)
  for (const [k, t] of v) out.set(`adam.v/${k}`, t)
  return out
}

function splitState (tensors: ReadonlyMap<string, Float32Array>, version: number, step: number): Omit<FetchedState, 'peer'> {
  const params = new Map<string, Float32Array>()
  const m = new Map<string, Float32Array>()
  const v = new Map<string, Float32Array>()
  for (const [k, t] of tensors) {
    const slash = k.indexOf('/')
    const kind = k.slice(0, slash)
    const name = k.slice(slash + 1)
    if (kind === 'param') params.set(name, t)
    else if (kind === 'adam.m') m.set(name, t)
    else if (kind === 'adam.v') v.set(name, t)
  }
  return { params, optimizer: { step: version, m, v }, step }
}
