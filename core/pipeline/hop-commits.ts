// Commitments on every hop (docs/verification.md): every training output a node sends, forward
// (activations to stage s+1) and backward (the input gradient to stage s-1), carries a signed
// HopCommitment (core/verify/commitment.ts) binding it to the exact inputs and weights it came
// from; the frame's metadata field `commitment` holds its bytes, base64.
//
//   producer   ParamsWitness: the digest of the weights each computation used (one download per
//              parameter version, taken under the stage worker's lock, and its hash after the lock
//              is released: the next microbatch computes meanwhile); HopStore: the
//              hops this node sent (inputs, output, weights by digest), so it can reveal them to a
//              checker (HopRecordSource). Both keep what they hold for the retention the checkers
//              rely on (core/verify DEFAULT_RETENTION_MS, plus a margin): a weights snapshot per
//              optimizer step of that window (tiny model, ~3 steps/s: ~100 MB), capped in bytes
//   receiver   accept(): the commitment must verify under the sender's key, name this run, stage,
//              microbatch and kind, and hash to the payload actually received; else the hop is
//              refused with a 'reject' verdict. ReceiptStore keeps what was accepted, per producer
//              (ReceiptSource: what a validator samples from, and what the work ledger counts)
// Eval microbatches carry no commitment: they do not change the model.
import type { PrivateKey } from '@libp2p/interface'
import { base64 } from 'multiformats/bases/base64'
import { LayerswarmError } from '../errors.ts'
import type { Stage } from '../model/stage.ts'
import { decodeCommitment, signCommitment, signedBody, verifyCommitment, type HopKind } from '../verify/commitment.ts'
import { hashHexAsync } from '../verify/digest.ts'
import { DEFAULT_RETENTION_MS, hopInputHashAsync, hopKey, type HopRecord, type HopRecordSource, type HopTensor, type ReceiptSource } from '../verify/hop-records.ts'
import { paramsDigestAsync } from '../verify/params-digest.ts'
import type { HopCommitment } from '../verify/commitment.ts'

/** How long this node keeps what it committed to: the checkers' window and a margin (ms). */
export const RETAIN_MS = DEFAULT_RETENTION_MS + 10_000
/** A commitment's time may differ from the receiver's clock by this much (ms): else a producer could date its hops out of the checkers' window. */
export const MAX_CLOCK_SKEW_MS = 60_000

/** A hop's commitment is missing or does not match what arrived (never honest): 'reject'. */
export class HopCommitmentError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_PIPELINE_COMMITMENT', message, { verdict: 'reject' })
  }
}

/** Digests of the weights each computation used, and the weights themselves while a retained hop may name them. */
export class ParamsWitness {
  /** The newest version's digest, hashed or being hashed (its snapshot is stored once hashed). */
  private readonly byVersion = new Map<number, Promise<string>>()
  private readonly snapshots = new Map<string, { values: ReadonlyMap<string, Float32Array>, used: number, bytes: number }>()
  private bytes = 0

  constructor (private readonly retainMs = RETAIN_MS, private readonly maxBytes = 512 * 2 ** 20, private readonly now: () => number = Date.now) {}

  /** The digest of `stage`'s parameters at `version`; call with the stage idle (under the worker's lock). */
  async capture (stage: Stage, version: number): Promise<string> {
    return await (await this.begin(stage, version)).digest
  }

  /**
   * Copies `stage`'s parameters at `version` (call with the stage idle: under the worker's lock) and
   * returns their digest to come: the hash needs only the copy, so the caller awaits it after
   * releasing the lock. One copy and hash per version; later calls share them.
   */
  async begin (stage: Stage, version: number): Promise<{ digest: Promise<string> }> {
    const t = this.now()
    const known = this.byVersion.get(version)
    if (known != null) {
      known.then(d => { this.touch(d, t) }, () => {})
      return { digest: known }
    }
    const values = await stage.params.download()
    const digest = paramsDigestAsync(values, stage.params.specs).then(d => { this.keep(d, values, t); return d })
    this.byVersion.clear()
    this.byVersion.set(version, digest)
    // a failed hash is not remembered: the next call hashes again
    digest.catch(() => { if (this.byVersion.get(version) === digest) this.byVersion.delete(version) })
    return { digest }
  }

  private touch (digest: string, t: number): void {
    const snap = this.snapshots.get(digest)
    if (snap != null) snap.used = Math.max(snap.used, t)
  }

  private keep (digest: string, values: ReadonlyMap<string, Float32Array>, t: number): void {
    const old = this.snapshots.get(digest)
    if (old != null) this.bytes -= old.bytes
    this.snapshots.delete(digest)
    const bytes = [...values.values()].reduce((a, v) => a + v.byteLength, 0)
    this.snapshots.set(digest, { values, used: t, bytes })
    this.bytes += bytes
    this.prune(t)
  }

  params (digest: string): ReadonlyMap<string, Float32Array> | undefined {
    return this.snapshots.get(digest)?.values
  }

  // oldest first (insertion order): past the window, or over the byte cap, but never the newest
  private prune (t: number): void {
    for (const [digest, s] of this.snapshots) {
      if (this.snapshots.size <= 1 || (t - s.used <= this.retainMs && this.bytes <= this.maxBytes)) break
      this.snapshots.delete(digest)
      this.bytes -= s.bytes
    }
  }
}

export interface HopStoreOptions {
  /** How long a hop is kept for reveal (ms). Default RETAIN_MS. */
  readonly retainMs?: number
  /** Payload bytes kept at most, all records together (oldest dropped first). Default 256 MiB. */
  readonly maxBytes?: number
  readonly now?: () => number
}

/** Records kept per microbatch and kind: a retried microbatch is computed again, maybe at a later step. */
const MAX_RECORDS_PER_HOP = 4

interface StoredHop { readonly record: HopRecord, readonly at: number, readonly step: number, readonly outputHash: string }

/**
 * The hops this node sent, newest kept, for reveal to a checker. A microbatch that the pipeline
 * retried through another peer reaches this node again under the same id and may be computed at a
 * later step: every computation is kept (up to MAX_RECORDS_PER_HOP), and a reveal picks the one its
 * commitment names (its step and outputHash). Keeping only the newest once convicted an honest last
 * stage of withholding: it revealed the retry's record for the first computation's commitment.
 */
export class HopStore implements HopRecordSource {
  private readonly records = new Map<string, StoredHop[]>()
  private bytes = 0
  private readonly retainMs: number
  private readonly maxBytes: number
  private readonly now: () => number

  constructor (private readonly witness: ParamsWitness, opts: HopStoreOptions = {}) {
    this.retainMs = opts.retainMs ?? RETAIN_MS
    this.maxBytes = opts.maxBytes ?? 256 * 2 ** 20
    this.now = opts.now ?? Date.now
  }

  add (r: HopRecord): void {
    const key = hopKey(r.microbatchId, r.kind)
    const c = decodeCommitment(signedBody(r.commitment))
    const list: StoredHop[] = []
    for (const e of this.records.get(key) ?? []) {
      // the same computation again (same step and output) replaces its record
      if (e.outputHash === c.outputHash && e.step === c.step) this.bytes -= sizeOf(e.record)
      else list.push(e)
    }
    list.push({ record: r, at: this.now(), step: c.step, outputHash: c.outputHash })
    this.bytes += sizeOf(r)
    while (list.length > MAX_RECORDS_PER_HOP) this.bytes -= sizeOf((list.shift() as StoredHop).record)
    // re-inserted: the map stays ordered by each key's newest record, which pruning relies on
    this.records.delete(key)
    this.records.set(key, list)
    this.prune(this.now())
  }

  record (microbatchId: bigint, kind: HopKind, which?: { step: number, outputHash: string }): HopRecord | undefined {
    const t = this.now()
    const live = (this.records.get(hopKey(microbatchId, kind)) ?? []).filter(e => t - e.at <= this.retainMs)
    const e = which == null ? live[live.length - 1] : live.find(e => e.step === which.step && e.outputHash === which.outputHash)
    return e?.record
  }

  params (digest: string): ReadonlyMap<string, Float32Array> | undefined {
    return this.witness.params(digest)
  }

  // oldest first: records past the window, then any while over the byte cap (the newest record is kept)
  private prune (t: number): void {
    for (const [k, list] of this.records) {
      while (list.length > 0 && (t - list[0].at > this.retainMs || this.bytes > this.maxBytes) && !(this.records.size === 1 && list.length === 1)) {
        this.bytes -= sizeOf((list.shift() as StoredHop).record)
      }
      if (list.length > 0) break
      this.records.delete(k)
    }
  }
}

function sizeOf (r: HopRecord): number {
  return r.output.bytes.byteLength + r.inputs.reduce((a, t) => a + t.bytes.byteLength, 0)
}

/** Signed commitments this node accepted, per producer and kind, newest kept. */
export class ReceiptStore implements ReceiptSource {
  private readonly byProducer = new Map<string, Uint8Array[]>()

  constructor (private readonly perProducer = 64, private readonly maxProducers = 1024) {}

  add (producer: string, kind: HopKind, signed: Uint8Array): void {
    const key = `${kind}:${producer}`
    const list = this.byProducer.get(key) ?? []
    list.unshift(signed)
    if (list.length > this.perProducer) list.length = this.perProducer
    this.byProducer.delete(key)
    this.byProducer.set(key, list)
    if (this.byProducer.size > this.maxProducers) this.byProducer.delete(this.byProducer.keys().next().value as string)
  }

  recent (producer: string, kind: HopKind, max: number): Uint8Array[] {
    return (this.byProducer.get(`${kind}:${producer}`) ?? []).slice(0, Math.max(0, max))
  }

  /** Every producer's receipts (for the work ledger). */
  * all (): Generator<{ producer: string, kind: HopKind, commitments: readonly Uint8Array[] }> {
    for (const [key, commitments] of this.byProducer) {
      const i = key.indexOf(':')
      yield { kind: key.slice(0, i) as HopKind, producer: key.slice(i + 1), commitments }
    }
  }
}

export interface HopCommitterInit {
  readonly runId: string
  readonly stage: number
  readonly me: string
  readonly key: PrivateKey
  readonly store: HopStore
  readonly receipts: ReceiptStore
  /** Every commitment accepted from a peer (the work ledger counts them); `tokens` = B x T of the hop. */
  readonly onReceipt?: (c: HopCommitment, tokens: number) => void
}

/** What a hop's producer commits to, before the output is encoded. */
export interface HopWork {
  readonly kind: HopKind
  readonly microbatchId: bigint
  /** The producer's optimizer steps when it computed the hop. */
  readonly step: number
  readonly inputs: readonly HopTensor[]
  readonly paramsDigest: string
}

export class HopCommitter {
  constructor (private readonly init: HopCommitterInit) {}

  /** Signs the commitment of a hop whose encoded output is `output`, keeps the record, returns the base64 for the frame. */
  async commit (work: HopWork, output: HopTensor): Promise<string> {
    const { init } = this
    const commitment = await signCommitment({
      runId: init.runId,
      stage: init.stage,
      microbatchId: work.microbatchId,
      kind: work.kind,
      step: work.step,
      inputHash: await hopInputHashAsync(work.inputs.map(t => t.bytes)),
      outputHash: await hashHexAsync(output.bytes),
      paramsDigest: work.paramsDigest,
      codecId: output.codecId,
      producer: init.me,
      time: Date.now()
    }, init.key)
    init.store.add({ commitment, kind: work.kind, microbatchId: work.microbatchId, stage: init.stage, inputs: work.inputs, output, paramsDigest: work.paramsDigest })
    return base64.baseEncode(commitment)
  }

  /**
   * Checks the commitment that came with a hop from `from` (its payload `payload`, encoded with
   * `codecId`), for stage `stage`'s output of `kind` on `microbatchId`; keeps it as a receipt.
   * Throws HopCommitmentError or a commitment error (verdict 'reject') when it does not match.
   */
  async accept (from: string, expect: { kind: HopKind, stage: number, microbatchId: bigint, codecId: number, tokens: number }, field: unknown, payload: Uint8Array): Promise<void> {
    if (typeof field !== 'string' || field.length === 0 || field.length > 1024) throw new HopCommitmentError(`a training ${expect.kind} hop must carry its commitment (metadata.commitment, base64)`)
    let signed: Uint8Array
    try {
      signed = base64.baseDecode(field)
    } catch {
      throw new HopCommitmentError('metadata.commitment is not base64')
    }
    const { commitment: c } = await verifyCommitment(signed, { producer: from })
    const want = `run ${this.init.runId} stage ${expect.stage} ${expect.kind} of microbatch ${expect.microbatchId} codec ${expect.codecId}`
    const got = `run ${c.runId} stage ${c.stage} ${c.kind} of microbatch ${c.microbatchId} codec ${c.codecId}`
    if (want !== got) throw new HopCommitmentError(`the commitment is for ${got}, the hop is ${want}`)
    if (Math.abs(c.time - Date.now()) > MAX_CLOCK_SKEW_MS) throw new HopCommitmentError(`the commitment is dated ${c.time - Date.now()} ms from this node's clock (at most ${MAX_CLOCK_SKEW_MS})`)
    if (c.outputHash !== await hashHexAsync(payload)) throw new HopCommitmentError(`the ${expect.kind} payload does not hash to the commitment's outputHash`)
    this.init.receipts.add(from, expect.kind, signed)
    this.init.onReceipt?.(c, expect.tokens)
  }
}
