// The honest spread of a hop's recomputation: how far two honest computations of the same stage
// forward and backward lie apart, on the tiny model, when they differ only in what an honest peer
// may differ in (CPU thread count or kernels, CPU vs WebGPU, a codec between the tensor and the
// checker). It sets the thresholds of core/verify/compare.ts (docs/verification.md).
//
// The S-stage tiny model first trains `--steps` steps on the bundled corpus on the reference backend
// (CPU, 1 worker thread), so weights and activations are those of a run rather than of the init;
// one held-out microbatch (B x T bytes) then goes through stages 0..S-1 for the checked stage's real
// input and real output gradient. The checked stage's forward output and input gradient are then
// recomputed from its trained weights:
//   backend rows   on each other backend from the same input, against the reference;
//   codec-in rows  on the reference from the input and output gradient after a codec round trip
//                  (what a checker sees if it recomputes from the f32 tensor, not the bytes sent);
//   codec-out rows the reference's own outputs against their round trip (a checker comparing its
//                  f32 recomputation with the decoded claim it was sent);
//   worst rows     the reference's decoded claim against another backend's recomputation;
//   attack rows    what the attacks look like to the same metrics, for contrast;
// and what a check costs beside the hop: the hop's compute, hashing its payload and its weights.
// Prints relL2 / cosine / norm ratio / max abs (and max abs relative to max |reference|).
//
//   nice -n 10 npx tsx bench/verify-spread.ts [--stage 1] [--stages 4] [--B 8] [--steps 40] [--json]
import { parseArgs } from 'node:util'
import type { Codec, ComputeBackend } from '../core/contracts/index.ts'
import { loadCorpus, type Batch } from '../core/data/index.ts'
import { modelPreset } from '../core/model/config.ts'
import { Prng } from '../core/model/prng.ts'
import { Stage } from '../core/model/stage.ts'
import { stageLayouts } from '../core/model/stage-split.ts'
import { tensorDiff, type TensorDiff } from '../core/verify/compare.ts'
import { hashHex, hashHexAsync, leBytes } from '../core/verify/digest.ts'
import { paramsDigest, paramsDigestAsync } from '../core/verify/params-digest.ts'
import { createCpuBackend } from '../plugins/backend-cpu/backend.ts'
import { fp16Codec, int8BlockCodec } from '../plugins/compression/index.ts'

interface Hop { out: Float32Array, din: Float32Array }
interface Row { name: string, forward: TensorDiff, backward: TensorDiff }

const { values: args } = parseArgs({
  options: {
    stage: { type: 'string', default: '1' },
    stages: { type: 'string', default: '4' },
    B: { type: 'string', default: '8' },
    steps: { type: 'string', default: '40' },
    json: { type: 'boolean', default: false }
  }
})
const S = Number(args.stages)
const k = Number(args.stage)
const B = Number(args.B)
const STEPS = Number(args.steps)
if (!(k > 0 && k < S - 1)) throw new Error(`--stage must be a middle stage (0 < stage < ${S - 1}): it needs a hidden input and an output gradient`)
const config = modelPreset('tiny')
const T = config.blockSize
const layouts = stageLayouts(config, S)
const SEED = 7
const started = performance.now()

/**
 * Trains the split model STEPS steps on `be`, then runs one held-out microbatch through it: the
 * checked stage's trained weights, its input and its output gradient.
 */
async function trainedBoundary (be: ComputeBackend): Promise<{ params: Map<string, Float32Array>, hidden: Float32Array, dout: Float32Array, other: { hidden: Float32Array, dout: Float32Array } }> {
  const corpus = await loadCorpus({ maxTokens: 2 ** 20 })
  const stages = layouts.map(l => new Stage(be, l, { seed: SEED }))
  /** Forward through every stage, backward down to stage `to`; returns stage k's input and output gradient. */
  const pass = async (batch: Batch, to: number): Promise<{ hidden: Float32Array, dout: Float32Array }> => {
    let hidden: Float32Array | undefined
    let input: Float32Array | undefined
    for (const [i, st] of stages.entries()) {
      if (i === k) input = hidden
      hidden = (await st.forward({ B, T, tokens: i === 0 ? batch.inputs : undefined, hidden, targets: st.isLast ? batch.targets : undefined })).hidden
    }
    let grad: Float32Array | undefined
    let dout: Float32Array | undefined
    for (let i = S - 1; i >= to; i--) {
      if (i === k) dout = grad
      grad = await stages[i].backward(grad) ?? undefined
    }
    return { hidden: input as Float32Array, dout: (dout ?? grad) as Float32Array }
  }
  try {
    for (let step = 0; step < STEPS; step++) {
      for (const st of stages) await st.zeroGrad()
      await pass(corpus.train.sampleBatch({ seed: SEED, nodeId: 'verify-spread', step, micro: 0 }, B, T), 0)
      let ss = 0
      for (const st of stages) ss += await st.gradSumSquares()
      for (const st of stages) await st.update({ lr: 3e-3, gradSumSquares: ss })
    }
    const last = await pass(corpus.heldOut.evalBatch(0, B, T), k + 1)
    const other = await pass(corpus.heldOut.evalBatch(1, B, T), k + 1)
    return { params: await stages[k].params.download(), ...last, other }
  } finally {
    for (const st of stages) st.dispose()
  }
}

/** The checked stage's forward output and input gradient on `be`. */
async function hop (be: ComputeBackend, hidden: Float32Array, dout: Float32Array): Promise<Hop> {
  const st = new Stage(be, layouts[k], { params: trained })
  try {
    const out = (await st.forward({ B, T, hidden })).hidden as Float32Array
    const din = await st.backward(dout) as Float32Array
    return { out, din }
  } finally {
    st.dispose()
  }
}

function roundTrip (codec: Codec, x: Float32Array, role: 'activation' | 'activation-grad'): Float32Array {
  return codec.decode(codec.encode(x, [B, T, x.length / (B * T)], role)).data
}

async function tryWebGpu (f16: boolean): Promise<ComputeBackend | string> {
  try {
    const { createWebGpuBackend } = await import('../plugins/backend-webgpu/index.ts')
    return await createWebGpuBackend({ allowSoftwareGpu: true, f16 })
  } catch (err) {
    return (err as Error).message.split('\n')[0]
  }
}

const rows: Row[] = []
const skipped: string[] = []
const row = (name: string, a: Hop, ref: Hop): void => { rows.push({ name, forward: tensorDiff(a.out, ref.out), backward: tensorDiff(a.din, ref.din) }) }

const refBackend = await createCpuBackend({ threads: 1 })
const { params: trained, hidden, dout, other } = await trainedBoundary(refBackend)
const ref = await hop(refBackend, hidden, dout)
row('cpu 1 thread vs itself (repeat)', await hop(refBackend, hidden, dout), ref)

const others: Array<[string, () => Promise<ComputeBackend | string>]> = [
  ['cpu 2 threads', async () => await createCpuBackend({ threads: 2 })],
  ['cpu inline', async () => await createCpuBackend({ threads: 0 })],
  ['cpu plain-ts kernels', async () => await createCpuBackend({ threads: 1, simd: false })],
  ['webgpu f32', async () => await tryWebGpu(false)],
  ['webgpu f16 matmuls', async () => await tryWebGpu(true)]
]
const recomputed = new Map<string, Hop>()
for (const [name, make] of others) {
  const be = await make()
  if (typeof be === 'string') { skipped.push(`${name}: ${be}`); continue }
  try {
    const h = await hop(be, hidden, dout)
    recomputed.set(name, h)
    row(`${name} vs cpu 1 thread`, h, ref)
  } finally {
    await be.dispose()
  }
}

const codecs = [fp16Codec(), int8BlockCodec()]
for (const c of codecs) {
  row(`codec-in ${c.name}: input and dout round-tripped`, await hop(refBackend, roundTrip(c, hidden, 'activation'), roundTrip(c, dout, 'activation-grad')), ref)
}
for (const c of codecs) {
  row(`codec-out ${c.name}: claim round-tripped`, { out: roundTrip(c, ref.out, 'activation'), din: roundTrip(c, ref.din, 'activation-grad') }, ref)
}
for (const [name, h] of recomputed) {
  if (!name.startsWith('webgpu') && name !== 'cpu plain-ts kernels') continue
  for (const c of codecs) {
    // the checker runs `name`; the claim is the reference's output as the receiver decoded it
    row(`worst: cpu claim through ${c.name} vs ${name}`, { out: roundTrip(c, ref.out, 'activation'), din: roundTrip(c, ref.din, 'activation-grad') }, h)
  }
}
// what the attacks look like to the same metrics (claim = the attack, reference = the honest hop)
const lazy = await hop(refBackend, other.hidden, other.dout)
const rng = new Prng('verify-spread-attack')
const randomLike = (x: Float32Array): Float32Array => {
  const rms = Math.sqrt(x.reduce((a, v) => a + v * v, 0) / x.length)
  return Float32Array.from(x, () => rng.normal() * rms)
}
const map = (f: (x: Float32Array) => Float32Array): Hop => ({ out: f(ref.out), din: f(ref.din) })
row('attack: random values of the same rms', map(randomLike), ref)
row('attack: scaled x10', map(x => x.map(v => 10 * v)), ref)
row('attack: scaled x1.05', map(x => x.map(v => 1.05 * v)), ref)
row('attack: sign-flipped', map(x => x.map(v => -v)), ref)
row('attack: lazy (another microbatch\'s output)', lazy, ref)
row('attack: all zeros', map(x => new Float32Array(x.length)), ref)

// what a check costs next to the hop itself: the hop's compute, and hashing its payload and weights
const timeMs = async (f: () => unknown, reps = 5): Promise<number> => {
  await f()
  const t0 = performance.now()
  for (let i = 0; i < reps; i++) await f()
  return (performance.now() - t0) / reps
}
const specs = [...trained].map(([name, v]) => ({ name, shape: [v.length] }))
const payload = leBytes(ref.out)
const costs = {
  hopMs: await timeMs(async () => await hop(refBackend, hidden, dout)),
  payloadBytes: payload.length,
  hashPayloadNobleMs: await timeMs(() => hashHex(payload)),
  hashPayloadWebCryptoMs: await timeMs(async () => await hashHexAsync(payload)),
  paramsBytes: specs.reduce((a, s) => a + 4 * s.shape[0], 0),
  paramsDigestNobleMs: await timeMs(() => paramsDigest(trained, specs)),
  paramsDigestWebCryptoMs: await timeMs(async () => await paramsDigestAsync(trained, specs))
}
await refBackend.dispose()

const seconds = (performance.now() - started) / 1000
if (args.json === true) {
  console.log(JSON.stringify({ suite: 'verify-spread', model: 'tiny', stage: k, stages: S, B, T, rows, skipped, costs, seconds }, null, 2))
} else {
  const e = (x: number): string => x === 0 ? '0' : x.toExponential(2)
  const cos = (x: number): string => x >= 1 ? '1' : x >= 0.9 ? `1-${e(1 - x)}` : x.toFixed(3)
  console.log(`honest spread, tiny model after ${STEPS} steps, stage ${k} of ${S}, B=${B} T=${T}: forward output [${B},${T},${config.dModel}] | input gradient`)
  console.log(['pair'.padEnd(58), 'fwd relL2', 'fwd cosine', 'fwd normR-1', 'fwd maxAbs', 'fwd maxRel', '| bwd relL2', 'bwd cosine', 'bwd normR-1', 'bwd maxAbs', 'bwd maxRel'].join(' '))
  for (const r of rows) {
    const cells = (d: TensorDiff): string[] => [e(d.relL2).padStart(9), cos(d.cosine).padStart(10), e(d.normRatio - 1).padStart(11), e(d.maxAbs).padStart(10), e(d.maxAbsRel).padStart(10)]
    console.log([r.name.padEnd(58), ...cells(r.forward), '|', ...cells(r.backward)].join(' '))
  }
  for (const s of skipped) console.log(`skipped ${s}`)
  const c = costs
  const ms = (x: number): string => `${x.toFixed(2)} ms`
  console.log(`cost: stage ${k} forward + backward on cpu 1 thread ${ms(c.hopMs)}; SHA-256 of the f32 output (${(c.payloadBytes / 1024).toFixed(0)} KiB) noble ${ms(c.hashPayloadNobleMs)}, WebCrypto ${ms(c.hashPayloadWebCryptoMs)}; params digest (${(c.paramsBytes / 1024).toFixed(0)} KiB) noble ${ms(c.paramsDigestNobleMs)}, WebCrypto ${ms(c.paramsDigestWebCryptoMs)}`)
  console.log(`(${seconds.toFixed(1)} s)`)
}
