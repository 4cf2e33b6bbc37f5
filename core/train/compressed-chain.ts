// An in-process stage chain whose boundaries run the swarm's boundary path: every activation that
// crosses stage s -> s+1 and every activation gradient that crosses back is encoded with the run's
// codec for its role (core/codecs/tensor-codecs.ts, the same adapter the pipeline node uses), put
// in a wire frame (core/wire encodeHeader), parsed back by the wire FrameDecoder, and decoded on the
// other side. Only the network is missing. It measures what compression (codecs and the learned
// bottleneck) costs in loss and saves in bytes, on one process and one deterministic backend.
//
//   tokens -> stage 0 -> [encode | frame | decode] -> stage 1 -> ... -> stage S-1 -> loss
//   stage 0 <- [decode | frame | encode] <- stage 1 <- ...            <- backward from the loss
//
// Parameters, clipping and the update are GptModel's (norm over all stages), so with lossless
// codecs the chain computes exactly what GptModel computes: the only difference is the codecs.
import type { ComputeBackend } from '../contracts/backend.ts'
import type { ModelConfig } from '../model/config.ts'
import { GptModel, type GptOptions } from '../model/gpt.ts'
import { learningRate, validateLrSchedule, type LrSchedule } from '../model/lr-schedule.ts'
import type { AdamWOptions, StepOptions, StepResult } from '../model/optimizer.ts'
import { StageStateError } from '../model/stage.ts'
import { ModelConfigError } from '../model/config.ts'
import type { BoundaryCodecs, BoundaryRole } from '../codecs/tensor-codecs.ts'
import { encodeHeader, FrameDecoder, type Frame } from '../wire/index.ts'
import type { TrainData } from '../data/index.ts'

/** Run id written in the frames' headers (frames never leave the process). */
const LOCAL_RUN_ID = '00000000000000000000000000000000'

/** Bytes that crossed one stage boundary (s -> s+1) since the last reset. */
export interface BoundaryTraffic {
  /** s: the boundary between stage s and s+1. */
  readonly boundary: number
  /** Encoded bytes (codec output, the wire frame's payload) of activations sent forward. */
  forwardBytes: number
  /** Tokens (B*T per crossing) whose activations crossed forward. */
  forwardTokens: number
  /** Encoded bytes of activation gradients sent back. */
  backwardBytes: number
  backwardTokens: number
  /** Whole wire frames (header + payload) forward and back, for reference. */
  forwardFrameBytes: number
  backwardFrameBytes: number
  /** Last boundary tensor's shape [B,T,W] (W = C, or k with a bottleneck). */
  shape: readonly number[]
}

/** Per-token figures of one boundary (or the mean over boundaries). */
export interface TrafficPerToken {
  /** Encoded activation bytes per token per boundary. */
  readonly forward: number
  /** Encoded activation-gradient bytes per token per boundary. */
  readonly backward: number
  /** forward + backward: what one trained token costs at one boundary. */
  readonly total: number
}

export function perToken (t: BoundaryTraffic): TrafficPerToken {
  const forward = t.forwardTokens > 0 ? t.forwardBytes / t.forwardTokens : 0
  const backward = t.backwardTokens > 0 ? t.backwardBytes / t.backwardTokens : 0
  return { forward, backward, total: forward + backward }
}

/**
 * Encodes a boundary tensor for the wire exactly as the pipeline node sends it: the run's codec for
 * `role`, then a frame header (kind = role, codec id, dtype f32, shape) in front of the bytes.
 * Returns the whole frame and the codec's byte count.
 */
export function encodeBoundary (codecs: BoundaryCodecs, role: BoundaryRole, data: Float32Array, shape: readonly number[],
  at: { stage: number, microbatchId?: bigint, runId?: string } = { stage: 0 }): { frame: Uint8Array, payloadBytes: number } {
  const enc = codecs.encode(role, data, shape)
  const init = { kind: role, runId: at.runId ?? LOCAL_RUN_ID, microbatchId: at.microbatchId ?? 0n, stage: at.stage, codecId: enc.codecId, dtype: 'f32' as const, shape }
  const header = encodeHeader(init, enc.bytes)
  const frame = new Uint8Array(header.byteLength + enc.bytes.byteLength)
  frame.set(header, 0)
  frame.set(enc.bytes, header.byteLength)
  return { frame, payloadBytes: enc.bytes.byteLength }
}

/**
 * Receives a boundary frame as the pipeline node does: the wire FrameDecoder (header checks,
 * payload CRC), then the run's codec for `role` (codec id check, element count, finite values).
 */
export function decodeBoundary (codecs: BoundaryCodecs, role: BoundaryRole, frameBytes: Uint8Array): Float32Array {
  const frames: Frame[] = new FrameDecoder().push(frameBytes)
  if (frames.length !== 1) throw new StageStateError(`expected one boundary frame, got ${frames.length}`)
  if (frames[0].header.kind !== role) throw new StageStateError(`expected a ${role} frame, got ${frames[0].header.kind}`)
  return codecs.decode(role, frames[0])
}

/** Zeroed traffic counters of the boundaries between `stages` stages. */
export function boundaryTraffic (stages: number): BoundaryTraffic[] {
  return Array.from({ length: stages - 1 }, (_, s) => ({
    boundary: s, forwardBytes: 0, forwardTokens: 0, backwardBytes: 0, backwardTokens: 0, forwardFrameBytes: 0, backwardFrameBytes: 0, shape: []
  }))
}

/**
 * One boundary crossing in process: encode + frame on the sending side, parse + decode on the
 * receiving side; the bytes count in `t` (forward for activations, backward for their gradients).
 */
export function crossBoundary (codecs: BoundaryCodecs, t: BoundaryTraffic, role: BoundaryRole, data: Float32Array, shape: number[],
  at: { stage: number, microbatchId: bigint }): Float32Array {
  const { frame, payloadBytes } = encodeBoundary(codecs, role, data, shape, at)
  const out = decodeBoundary(codecs, role, frame)
  const tokens = data.length / shape[shape.length - 1]
  if (role === 'activation') {
    t.forwardBytes += payloadBytes
    t.forwardFrameBytes += frame.byteLength
    t.forwardTokens += tokens
    t.shape = shape
  } else {
    t.backwardBytes += payloadBytes
    t.backwardFrameBytes += frame.byteLength
    t.backwardTokens += tokens
  }
  return out
}

/** Mean over boundaries of the per-token figures. */
export function meanTrafficPerToken (traffic: readonly BoundaryTraffic[]): TrafficPerToken {
  const all = traffic.map(perToken)
  const n = Math.max(1, all.length)
  const f = all.reduce((a, t) => a + t.forward, 0) / n
  const b = all.reduce((a, t) => a + t.backward, 0) / n
  return { forward: f, backward: b, total: f + b }
}

export interface CompressedChainOptions extends GptOptions {
  /** S >= 2 for any boundary to exist. */
  readonly stages: number
  /** Codecs for 'activation' and 'activation-grad' (core/codecs/tensor-codecs.ts `boundaryCodecs`). */
  readonly codecs: BoundaryCodecs
}

/** GptModel's stages run in sequence with every boundary tensor sent through codecs and wire frames. */
export class CompressedChain {
  readonly model: GptModel
  readonly codecs: BoundaryCodecs
  readonly traffic: BoundaryTraffic[]
  /** Decoded tensors each stage last received (forward input, index s-1 for stage s), for inspection. */
  readonly lastReceived: Array<Float32Array | null>
  private microbatch = 0n
  /** B and T of the latest forward, for the shape of the gradients sent back. */
  private lastBT: [number, number] = [0, 0]

  constructor (backend: ComputeBackend, config: ModelConfig, opts: CompressedChainOptions) {
    this.model = new GptModel(backend, config, opts)
    this.codecs = opts.codecs
    const S = this.model.stages.length
    this.traffic = boundaryTraffic(S)
    this.lastReceived = Array.from({ length: S - 1 }, () => null)
  }

  get stages (): number { return this.model.stages.length }

  /** Forward through every stage; the mean loss with targets (last stage computes it). */
  async forward (tokens: Int32Array, B: number, T: number, targets?: Int32Array): Promise<number | undefined> {
    const stages = this.model.stages
    this.microbatch++
    this.lastBT = [B, T]
    let hidden: Float32Array | undefined
    for (let s = 0; s < stages.length; s++) {
      const stage = stages[s]
      if (s > 0) hidden = this.cross(s - 1, 'activation', hidden as Float32Array, [B, T, stages[s - 1].boundaryWidth], s)
      const out = await stage.forward({ B, T, tokens: s === 0 ? tokens : undefined, hidden: s === 0 ? undefined : hidden, targets: stage.isLast ? targets : undefined })
      if (stage.isLast) return out.loss
      hidden = out.hidden
    }
    throw new StageStateError('chain has no last stage')
  }

  /** Backward from the latest forward's mean loss; each input gradient crosses back through the codec. */
  async backward (): Promise<void> {
    const stages = this.model.stages
    let dout: Float32Array | undefined
    for (let s = stages.length - 1; s >= 0; s--) {
      const dinput = await stages[s].backward(dout)
      if (s === 0) return
      const [B, T] = this.lastBT
      dout = this.cross(s - 1, 'activation-grad', dinput as Float32Array, [B, T, stages[s].boundaryWidth], s - 1)
    }
  }

  async zeroGrad (): Promise<void> { await this.model.zeroGrad() }
  async update (opts: StepOptions): Promise<StepResult> { return await this.model.update(opts) }
  resetTraffic (): void {
    for (const t of this.traffic) {
      t.forwardBytes = t.forwardTokens = t.backwardBytes = t.backwardTokens = t.forwardFrameBytes = t.backwardFrameBytes = 0
    }
  }

  /** Mean over boundaries of the per-token figures. */
  meanPerToken (): TrafficPerToken { return meanTrafficPerToken(this.traffic) }

  dispose (): void { this.model.dispose() }

  /** One boundary crossing (crossBoundary); the decoded activation is kept for inspection. */
  private cross (boundary: number, role: BoundaryRole, data: Float32Array, shape: number[], toStage: number): Float32Array {
    const out = crossBoundary(this.codecs, this.traffic[boundary], role, data, shape, { stage: toStage, microbatchId: this.microbatch })
    if (role === 'activation') this.lastReceived[boundary] = out
    return out
  }
}

export interface ChainTrainOptions {
  readonly backend: ComputeBackend
  readonly config: ModelConfig
  readonly data: TrainData
  readonly codecs: BoundaryCodecs
  readonly steps: number
  /** S (>= 2) and k (0 = no bottleneck). */
  readonly stages: number
  readonly bottleneck?: number
  readonly batchSize: number
  /** Default: the context length. */
  readonly seqLen?: number
  readonly schedule: LrSchedule
  readonly optimizer?: Partial<AdamWOptions>
  readonly seed: number
  /** Held-out batches of the final eval, evalBatch(0..n-1): the same batches for every run. Default 8. */
  readonly evalBatches?: number
  /** Starting parameters by name (others get the seeded init). */
  readonly params?: ReadonlyMap<string, Float32Array>
  readonly onStep?: (step: number, loss: number) => void
}

export interface ChainTrainResult {
  readonly losses: number[]
  /** Mean held-out loss (nats/token) over the eval batches, through the compressed boundaries. */
  readonly evalLoss: number
  readonly evalBatches: number
  /** Training crossings only (eval traffic excluded). */
  readonly traffic: BoundaryTraffic[]
  readonly perToken: TrafficPerToken
  /** Boundary tensor width W (C, or k). */
  readonly boundaryWidth: number
  readonly trainSeconds: number
  readonly skippedSteps: number
  readonly params: number
}

/** trainLocal's loop (one microbatch per step) on a CompressedChain, then a held-out eval through the same boundaries. */
export async function trainCompressedChain (opts: ChainTrainOptions): Promise<ChainTrainResult> {
  const { config } = opts
  if (!Number.isSafeInteger(opts.steps) || opts.steps < 1) throw new ModelConfigError(`steps must be a positive integer, got ${opts.steps}`)
  if (!Number.isSafeInteger(opts.stages) || opts.stages < 2) throw new ModelConfigError(`a compressed chain needs at least 2 stages, got ${opts.stages}`)
  const schedule = validateLrSchedule(opts.schedule)
  const chain = new CompressedChain(opts.backend, config, {
    stages: opts.stages, bottleneck: opts.bottleneck ?? 0, seed: opts.seed, optimizer: opts.optimizer, params: opts.params, codecs: opts.codecs
  })
  try {
    return await runChainTraining(chain, opts, { schedule, boundaryWidth: chain.model.stages[0].boundaryWidth, params: chain.model.numel })
  } finally {
    chain.dispose()
  }
}

/** What runChainTraining drives: a CompressedChain, or a chain with its own boundaries and update rule (bench/subspace-chain.ts). */
export interface TrainableChain {
  readonly traffic: readonly BoundaryTraffic[]
  zeroGrad (): Promise<void>
  forward (tokens: Int32Array, B: number, T: number, targets?: Int32Array): Promise<number | undefined>
  backward (): Promise<void>
  update (opts: StepOptions): Promise<StepResult>
}

/**
 * trainLocal's loop (one microbatch per step) on a chain, then a held-out eval through the same
 * boundaries. The caller checks the options and sizes the result's boundary width and parameter count.
 */
export async function runChainTraining (chain: TrainableChain, opts: ChainTrainOptions,
  run: { schedule: LrSchedule, boundaryWidth: number, params: number }): Promise<ChainTrainResult> {
  const { data } = opts
  const B = opts.batchSize
  const T = opts.seqLen ?? opts.config.blockSize
  const losses: number[] = []
  let skipped = 0
  const t0 = performance.now()
  for (let step = 0; step < opts.steps; step++) {
    const b = await data.trainBatch(step, 0, B, T)
    await chain.zeroGrad()
    const loss = await chain.forward(b.inputs, B, T, b.targets) as number
    await chain.backward()
    const r = await chain.update({ lr: learningRate(step, run.schedule) })
    if (!r.applied) skipped++
    losses.push(loss)
    opts.onStep?.(step + 1, loss)
  }
  const trainSeconds = (performance.now() - t0) / 1000
  // taken before the eval, whose crossings count too
  const traffic = chain.traffic.map(t => ({ ...t }))
  const perTok = meanTrafficPerToken(traffic)
  const n = Math.max(1, Math.min(opts.evalBatches ?? 8, data.evalBatchCount?.(B, T) ?? Infinity))
  let sum = 0
  for (let i = 0; i < n; i++) {
    const b = await data.evalBatch(i, B, T)
    sum += await chain.forward(b.inputs, B, T, b.targets) as number
  }
  return {
    losses,
    evalLoss: sum / n,
    evalBatches: n,
    traffic,
    perToken: perTok,
    boundaryWidth: run.boundaryWidth,
    trainSeconds,
    skippedSteps: skipped,
    params: run.params
  }
}
