// Shared by the verification tests: real hops of a tiny split model, as the pipeline would record
// them. Every stage runs on a real Stage (the backend given), its outputs cross the boundary through
// the run's codecs, and each hop's record carries a commitment signed by its stage's producer key,
// with inputHash / outputHash per core/verify/hop-records.ts. `cheat` turns an honest hop into one of
// issue 13's attacks (the cheater signs what it sends, so the commitment matches its lie).
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Codec, ComputeBackend } from '../core/contracts/index.ts'
import { tensorCodecs, type BoundaryRole, type TensorCodecs } from '../core/codecs/tensor-codecs.ts'
import { validateModelConfig } from '../core/model/config.ts'
import { Prng } from '../core/model/prng.ts'
import { Stage } from '../core/model/stage.ts'
import { stageLayouts } from '../core/model/stage-split.ts'
import { defaultManifest, runId, type RunManifest } from '../core/run/manifest.ts'
import { signCommitment, type HopCommitment, type HopKind } from '../core/verify/commitment.ts'
import { leBytes } from '../core/verify/digest.ts'
import { hopInputHash, hopOutputHash, type HopRecord, type HopTensor } from '../core/verify/hop-records.ts'
import { paramsDigest } from '../core/verify/params-digest.ts'
import type { RevealedHop } from '../core/verify/recompute.ts'
import { builtinCodecs } from '../plugins/compression/index.ts'

export const VERIFY_MODEL = { vocabSize: 64, blockSize: 16, nLayer: 4, nHead: 2, dModel: 32 }

/** A tiny run: `stages` stages, B = 2, T = 16, the boundary codec named (`none`, `fp16`, `int8-block`). */
export function verifyManifest (stages = 3, codec = 'none'): RunManifest {
  return defaultManifest({
    name: 'verify-test',
    model: VERIFY_MODEL,
    stages: { count: stages, split: null },
    data: { corpus: 'test', seed: 3, tokenizer: 'byte', batchSize: 2, seqLen: 16 },
    codecs: { activation: codec, 'activation-grad': codec, parameter: 'none', 'parameter-grad': 'none' },
    bottleneck: null
  }, { validateModel: validateModelConfig })
}

export function runCodecs (manifest: RunManifest): TensorCodecs<BoundaryRole> {
  const plugin: Codec[] = builtinCodecs()
  return tensorCodecs({ activation: manifest.codecs.activation, 'activation-grad': manifest.codecs['activation-grad'] }, plugin)
}

export interface Producer {
  readonly key: PrivateKey
  readonly id: string
}

export async function producer (): Promise<Producer> {
  const key = await generateKeyPair('Ed25519')
  return { key, id: peerIdFromPrivateKey(key).toString() }
}

export interface HopSet {
  readonly manifest: RunManifest
  readonly codecs: TensorCodecs<BoundaryRole>
  /** The producer of each stage. */
  readonly producers: readonly Producer[]
  /** hops.get(`${kind}:${stage}`): every hop one microbatch makes. */
  readonly hops: ReadonlyMap<string, RevealedHop>
}

function tensor (bytes: Uint8Array, codecId: number, dtype: 'f32' | 'i32', shape: number[]): HopTensor {
  return { bytes, codecId, dtype, shape }
}

/**
 * One microbatch (`microbatchId`, token seed `seed`) through every stage forward and back, on
 * `backend`, with weights from `weightSeed`; producers default to fresh keys.
 */
export async function runHops (manifest: RunManifest, backend: ComputeBackend, opts: { microbatchId?: bigint, seed?: number, weightSeed?: number, producers?: readonly Producer[] } = {}): Promise<HopSet> {
  const S = manifest.stages.count
  const config = validateModelConfig(manifest.model)
  const layouts = stageLayouts(config, S)
  const codecs = runCodecs(manifest)
  const producers = opts.producers ?? await Promise.all(layouts.map(async () => await producer()))
  const B = manifest.data.batchSize
  const T = manifest.data.seqLen
  const rng = new Prng(opts.seed ?? 1)
  const tokens = Int32Array.from({ length: B * T }, () => Math.floor(rng.nextFloat() * config.vocabSize))
  const targets = Int32Array.from({ length: B * T }, (_, i) => i % 7 === 0 ? -1 : Math.floor(rng.nextFloat() * config.vocabSize))
  const id = opts.microbatchId ?? 1n
  const hops = new Map<string, RevealedHop>()
  const stages = layouts.map(l => new Stage(backend, l, { seed: opts.weightSeed ?? 5 }))
  try {
    const params = await Promise.all(stages.map(async st => await st.params.download()))
    const specs = stages.map(st => st.params.specs)
    const record = async (stage: number, kind: HopKind, inputs: HopTensor[], output: HopTensor): Promise<void> => {
      const digest = paramsDigest(params[stage], specs[stage])
      const c: HopCommitment = {
        runId: runId(manifest), stage, microbatchId: id, kind, step: 3,
        inputHash: hopInputHash(inputs.map(t => t.bytes)), outputHash: hopOutputHash(output.bytes),
        paramsDigest: digest, codecId: output.codecId, producer: producers[stage].id, time: Date.now()
      }
      const rec: HopRecord = { commitment: await signCommitment(c, producers[stage].key), kind, microbatchId: id, stage, inputs, output, paramsDigest: digest }
      hops.set(`${kind}:${stage}`, { record: rec, params: params[stage] })
    }
    const hiddenShape = (W: number): number[] => [B, T, W]
    const received: HopTensor[] = [] // received[s]: the input stage s got
    let input: HopTensor = tensor(leBytes(tokens).slice(), 0, 'i32', [B, T])
    for (let s = 0; s < S; s++) {
      received[s] = input
      const hidden = s === 0 ? undefined : codecs.decodeBytes('activation', input.codecId, input.bytes)
      const out = await stages[s].forward({ B, T, tokens: s === 0 ? tokens : undefined, hidden, targets: s === S - 1 ? targets : undefined })
      if (s === S - 1) break
      const shape = hiddenShape(stages[s].boundaryWidth)
      const enc = codecs.encode('activation', out.hidden as Float32Array, shape)
      const sent = tensor(enc.bytes, enc.codecId, 'f32', shape)
      await record(s, 'forward', [received[s]], sent)
      input = sent
    }
    let grad: HopTensor | undefined
    for (let s = S - 1; s >= 1; s--) {
      const dout = grad == null ? undefined : codecs.decodeBytes('activation-grad', grad.codecId, grad.bytes)
      const din = await stages[s].backward(dout) as Float32Array
      const shape = hiddenShape(stages[s].boundaryWidth)
      const enc = codecs.encode('activation-grad', din, shape)
      const sent = tensor(enc.bytes, enc.codecId, 'f32', shape)
      const second = grad ?? tensor(leBytes(targets).slice(), 0, 'i32', [B, T])
      await record(s, 'backward', [received[s], second], sent)
      grad = sent
    }
  } finally {
    for (const st of stages) st.dispose()
  }
  return { manifest, codecs, producers, hops }
}

export type Attack = 'random' | 'scaled' | 'signflip' | 'lazy'

/**
 * The hop `hop` as a cheater sends it: its decoded output transformed (random values of the same
 * rms, x10, sign flip) or another microbatch's output (`lazy`: `other`'s bytes), re-encoded with
 * the hop's codec and signed by `by`, so that the commitment matches what was sent.
 */
export async function cheat (set: HopSet, hop: RevealedHop, attack: Attack, by: Producer, other?: RevealedHop): Promise<RevealedHop> {
  const r = hop.record
  const role: BoundaryRole = r.kind === 'forward' ? 'activation' : 'activation-grad'
  let bytes: Uint8Array
  if (attack === 'lazy') {
    if (other == null) throw new Error('lazy needs another microbatch\'s hop')
    bytes = other.record.output.bytes
  } else {
    const x = set.codecs.decodeBytes(role, r.output.codecId, r.output.bytes)
    const rng = new Prng(`cheat-${attack}`)
    const rms = Math.sqrt(x.reduce((a, v) => a + v * v, 0) / x.length)
    const y = attack === 'random' ? Float32Array.from(x, () => rng.normal() * rms) : attack === 'scaled' ? x.map(v => 10 * v) : x.map(v => -v)
    bytes = set.codecs.encode(role, y, r.output.shape).bytes
  }
  return { record: await resign({ ...r, output: { ...r.output, bytes } }, by), params: hop.params }
}

/** `record` with its commitment re-made for its current output bytes and signed by `by`. */
export async function resign (record: HopRecord, by: Producer, over: Partial<HopCommitment> = {}): Promise<HopRecord> {
  const { verifyCommitment } = await import('../core/verify/commitment.ts')
  const c = (await verifyCommitment(record.commitment)).commitment
  const next: HopCommitment = { ...c, outputHash: hopOutputHash(record.output.bytes), producer: by.id, ...over }
  return { ...record, commitment: await signCommitment(next, by.key) }
}
