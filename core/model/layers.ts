// One plain forward and one backward function per layer of the model, llm.c style, in terms of
// ComputeBackend kernels only. Shapes: B batch, T time, C channels, NH heads, V vocab, k
// bottleneck width. Backend backward kernels ACCUMULATE into their outputs, so each backward
// here zeroes its scratch buffers before use; parameter gradients are zeroed once per step.
import type { ComputeBackend, Tensor } from '../contracts/backend.ts'

/** A parameter tensor with its gradient buffer. */
export interface Param {
  readonly w: Tensor
  readonly g: Tensor
}

// ---- transformer block ---------------------------------------------------------------------

export interface BlockParams {
  ln1w: Param, ln1b: Param // [C]
  qkvw: Param, qkvb: Param // [3C,C], [3C]
  attprojw: Param, attprojb: Param // [C,C], [C]
  ln2w: Param, ln2b: Param // [C]
  fcw: Param, fcb: Param // [4C,C], [4C]
  fcprojw: Param, fcprojb: Param // [C,4C], [C]
}

/** Activations one block keeps from forward for backward. */
export interface BlockActivations {
  ln1: Tensor, ln1Mean: Tensor, ln1Rstd: Tensor // [B,T,C], [B,T], [B,T]
  qkv: Tensor // [B,T,3C]
  atty: Tensor // [B,T,C] attention output before the projection
  preatt: Tensor | null, att: Tensor | null // [B,NH,T,T]; null with flash attention
  lse: Tensor | null // [B,NH,T] flash attention only: each row's log-sum-exp, for backward
  attproj: Tensor // [B,T,C]
  residual2: Tensor // [B,T,C] x + attproj
  ln2: Tensor, ln2Mean: Tensor, ln2Rstd: Tensor // [B,T,C], [B,T], [B,T]
  fch: Tensor, fchGelu: Tensor // [B,T,4C]
  fcproj: Tensor // [B,T,C]
  residual3: Tensor // [B,T,C] block output: residual2 + fcproj
}

/** Gradient scratch shared by every block of a stage (blocks run backward one at a time). */
export interface BlockScratch {
  dres2: Tensor // [B,T,C] gradient w.r.t. residual2
  dln: Tensor // [B,T,C] gradient w.r.t. ln1 or ln2 output
  dqkv: Tensor // [B,T,3C]
  datty: Tensor // [B,T,C]
  dpreatt: Tensor | null, datt: Tensor | null // [B,NH,T,T]; null with flash attention
  dfch: Tensor, dfchGelu: Tensor // [B,T,4C]
}

/**
 * How a block computes attention (the model config's `attention`): 'full' keeps preatt and att
 * [B,NH,T,T] (and their gradients), 'flash' only lse [B,NH,T] (memory O(T), recomputed in backward).
 */
export type AttentionMode = 'full' | 'flash'

/** The saved attention buffers of one block for `mode`. */
export function allocAttention (be: ComputeBackend, B: number, T: number, NH: number, mode: AttentionMode): { preatt: Tensor | null, att: Tensor | null, lse: Tensor | null } {
  return mode === 'flash'
    ? { preatt: null, att: null, lse: be.alloc([B, NH, T]) }
    : { preatt: be.alloc([B, NH, T, T]), att: be.alloc([B, NH, T, T]), lse: null }
}

/** The attention gradient scratch for `mode` (none with flash). */
export function allocAttentionScratch (be: ComputeBackend, B: number, T: number, NH: number, mode: AttentionMode): { dpreatt: Tensor | null, datt: Tensor | null } {
  return mode === 'flash' ? { dpreatt: null, datt: null } : { dpreatt: be.alloc([B, NH, T, T]), datt: be.alloc([B, NH, T, T]) }
}

/** atty [B,T,C] from qkv [B,T,3C] with whichever buffers `a` holds (lse: flash). */
export async function attentionForward (be: ComputeBackend, a: { atty: Tensor, qkv: Tensor, preatt: Tensor | null, att: Tensor | null, lse: Tensor | null }, NH: number): Promise<void> {
  if (a.lse != null) await be.attentionFlashForward(a.atty, a.lse, a.qkv, NH)
  else await be.attentionForward(a.atty, a.preatt as Tensor, a.att as Tensor, a.qkv, NH)
}

/** Accumulates into dqkv [B,T,3C] from datty [B,T,C]; zeroes the full mode's scratch first. */
export async function attentionBackward (be: ComputeBackend, a: { atty: Tensor, qkv: Tensor, att: Tensor | null, lse: Tensor | null },
  s: { dpreatt: Tensor | null, datt: Tensor | null }, dqkv: Tensor, datty: Tensor, NH: number): Promise<void> {
  if (a.lse != null) { await be.attentionFlashBackward(dqkv, datty, a.atty, a.qkv, a.lse, NH); return }
  const dpreatt = s.dpreatt as Tensor; const datt = s.datt as Tensor
  await be.fill(dpreatt, 0)
  await be.fill(datt, 0)
  await be.attentionBackward(dqkv, dpreatt, datt, datty, a.qkv, a.att as Tensor, NH)
}

export function allocBlockActivations (be: ComputeBackend, B: number, T: number, C: number, NH: number, mode: AttentionMode = 'full'): BlockActivations {
  return {
    ln1: be.alloc([B, T, C]),
    ln1Mean: be.alloc([B, T]),
    ln1Rstd: be.alloc([B, T]),
    qkv: be.alloc([B, T, 3 * C]),
    atty: be.alloc([B, T, C]),
    ...allocAttention(be, B, T, NH, mode),
    attproj: be.alloc([B, T, C]),
    residual2: be.alloc([B, T, C]),
    ln2: be.alloc([B, T, C]),
    ln2Mean: be.alloc([B, T]),
    ln2Rstd: be.alloc([B, T]),
    fch: be.alloc([B, T, 4 * C]),
    fchGelu: be.alloc([B, T, 4 * C]),
    fcproj: be.alloc([B, T, C]),
    residual3: be.alloc([B, T, C])
  }
}

export function allocBlockScratch (be: ComputeBackend, B: number, T: number, C: number, NH: number, mode: AttentionMode = 'full'): BlockScratch {
  return {
    dres2: be.alloc([B, T, C]),
    dln: be.alloc([B, T, C]),
    dqkv: be.alloc([B, T, 3 * C]),
    datty: be.alloc([B, T, C]),
    ...allocAttentionScratch(be, B, T, NH, mode),
    dfch: be.alloc([B, T, 4 * C]),
    dfchGelu: be.alloc([B, T, 4 * C])
  }
}

/** x [B,T,C] -> a.residual3 [B,T,C]: pre-LN attention then pre-LN MLP, each with a residual add. */
export async function blockForward (be: ComputeBackend, p: BlockParams, a: BlockActivations, x: Tensor, NH: number): Promise<void> {
  await be.layernormForward(a.ln1, a.ln1Mean, a.ln1Rstd, x, p.ln1w.w, p.ln1b.w)
  await be.matmulForward(a.qkv, a.ln1, p.qkvw.w, p.qkvb.w)
  await attentionForward(be, a, NH)
  await be.matmulForward(a.attproj, a.atty, p.attprojw.w, p.attprojb.w)
  await be.residualForward(a.residual2, x, a.attproj)
  await be.layernormForward(a.ln2, a.ln2Mean, a.ln2Rstd, a.residual2, p.ln2w.w, p.ln2b.w)
  await be.matmulForward(a.fch, a.ln2, p.fcw.w, p.fcb.w)
  await be.geluForward(a.fchGelu, a.fch)
  await be.matmulForward(a.fcproj, a.fchGelu, p.fcprojw.w, p.fcprojb.w)
  await be.residualForward(a.residual3, a.residual2, a.fcproj)
}

/**
 * dres [B,T,C]: on entry the gradient w.r.t. the block output (residual3); on return the gradient
 * w.r.t. the block input x. Accumulates the block's parameter gradients.
 */
export async function blockBackward (be: ComputeBackend, p: BlockParams, a: BlockActivations, s: BlockScratch, x: Tensor, dres: Tensor, NH: number): Promise<void> {
  // MLP: residual3 = residual2 + c_proj(gelu(c_fc(ln_2(residual2))))
  await be.fill(s.dfchGelu, 0)
  await be.matmulBackward(s.dfchGelu, p.fcprojw.g, p.fcprojb.g, dres, a.fchGelu, p.fcprojw.w)
  await be.fill(s.dfch, 0)
  await be.geluBackward(s.dfch, a.fch, s.dfchGelu)
  await be.fill(s.dln, 0)
  await be.matmulBackward(s.dln, p.fcw.g, p.fcb.g, s.dfch, a.ln2, p.fcw.w)
  await be.copy(s.dres2, dres) // the residual path carries dres straight through
  await be.layernormBackward(s.dres2, p.ln2w.g, p.ln2b.g, s.dln, a.residual2, p.ln2w.w, a.ln2Mean, a.ln2Rstd)
  // attention: residual2 = x + c_proj(attn(c_attn(ln_1(x))))
  await be.fill(s.datty, 0)
  await be.matmulBackward(s.datty, p.attprojw.g, p.attprojb.g, s.dres2, a.atty, p.attprojw.w)
  await be.fill(s.dqkv, 0)
  await attentionBackward(be, a, s, s.dqkv, s.datty, NH)
  await be.fill(s.dln, 0)
  await be.matmulBackward(s.dln, p.qkvw.g, p.qkvb.g, s.dqkv, a.ln1, p.qkvw.w)
  await be.copy(dres, s.dres2)
  await be.layernormBackward(dres, p.ln1w.g, p.ln1b.g, s.dln, x, p.ln1w.w, a.ln1Mean, a.ln1Rstd)
}

// ---- learned bottleneck at a stage boundary -------------------------------------------------
//
// down (last block of stage s):  z[B,T,k] = x[:,:,:k] + x @ Wd^T + bd     (Wd [k,C])
// up (first block of stage s+1): y[B,T,C] = pad_C(z) + z @ Wu^T + bu      (Wu [C,k])
// The identity terms keep a residual path through the first k channels. Both are linear in the
// input, so each runs as one matmul with the effective weight W + E, where E is the constant
// [k,C] (down) or [C,k] (up) matrix with ones on the diagonal: dW then equals dW_eff, and the
// input gradient flows through W + E.

export interface BottleneckProjection {
  w: Param // [OUT,IN]
  b: Param // [OUT]
  /** Constant identity part E [OUT,IN]. */
  eye: Tensor
  /** W + E, rebuilt on every forward [OUT,IN]. */
  weff: Tensor
}

/** Matrix [rows, cols] with ones on the main diagonal (the identity path of a bottleneck). */
export function identityPart (be: ComputeBackend, rows: number, cols: number): Tensor {
  const e = new Float32Array(rows * cols)
  for (let i = 0; i < Math.min(rows, cols); i++) e[i * cols + i] = 1
  return be.upload(e, [rows, cols])
}

/** out [B,T,OUT] = inp [B,T,IN] @ (W + E)^T + b */
export async function bottleneckForward (be: ComputeBackend, p: BottleneckProjection, out: Tensor, inp: Tensor): Promise<void> {
  await be.copy(p.weff, p.w.w)
  await be.accumulate(p.weff, p.eye, 1)
  await be.matmulForward(out, inp, p.weff, p.b.w)
}

/** Accumulates into dinp [B,T,IN] (unless null) and the projection's gradients. */
export async function bottleneckBackward (be: ComputeBackend, p: BottleneckProjection, dinp: Tensor, dout: Tensor, inp: Tensor): Promise<void> {
  await be.matmulBackward(dinp, p.w.g, p.b.g, dout, inp, p.weff)
}

// ---- embedding -------------------------------------------------------------------------------

/** out [B,T,C] = wte[tokens] + wpe[0..T-1]; tokens i32 [B,T]. */
export async function embeddingForward (be: ComputeBackend, wte: Param, wpe: Param, out: Tensor, tokens: Tensor): Promise<void> {
  await be.encoderForward(out, tokens, wte.w, wpe.w)
}

export async function embeddingBackward (be: ComputeBackend, wte: Param, wpe: Param, dout: Tensor, tokens: Tensor): Promise<void> {
  await be.encoderBackward(wte.g, wpe.g, dout, tokens)
}

// ---- head: final LayerNorm, LM head, softmax cross-entropy -----------------------------------

export interface HeadParams {
  lnfw: Param, lnfb: Param // [C]
  lmHead: Param // [V,C]
}

export interface HeadActivations {
  lnf: Tensor, lnfMean: Tensor, lnfRstd: Tensor // [B,T,C], [B,T], [B,T]
  logits: Tensor // [B,T,V]
  probs: Tensor // [B,T,V]
  losses: Tensor // [B,T]
  targets: Tensor // i32 [B,T]
  dlogits: Tensor // [B,T,V] scratch
  dlnf: Tensor // [B,T,C] scratch
}

export function allocHeadActivations (be: ComputeBackend, B: number, T: number, C: number, V: number): HeadActivations {
  return {
    lnf: be.alloc([B, T, C]),
    lnfMean: be.alloc([B, T]),
    lnfRstd: be.alloc([B, T]),
    logits: be.alloc([B, T, V]),
    probs: be.alloc([B, T, V]),
    losses: be.alloc([B, T]),
    targets: be.alloc([B, T], 'i32'),
    dlogits: be.alloc([B, T, V]),
    dlnf: be.alloc([B, T, C])
  }
}

/** x [B,T,C] -> logits [B,T,V]. */
export async function headForward (be: ComputeBackend, p: HeadParams, a: HeadActivations, x: Tensor): Promise<void> {
  await be.layernormForward(a.lnf, a.lnfMean, a.lnfRstd, x, p.lnfw.w, p.lnfb.w)
  await be.matmulForward(a.logits, a.lnf, p.lmHead.w, null)
}

/** Per-position losses [B,T] from logits and a.targets (targets < 0 give loss 0). */
export async function lossForward (be: ComputeBackend, a: HeadActivations): Promise<void> {
  await be.crossEntropyForward(a.losses, a.probs, a.logits, a.targets)
}

/**
 * Backward of mean cross-entropy (dlossScale = 1/count of counted targets) through the head.
 * dx [B,T,C] receives (accumulates) the gradient w.r.t. the head input.
 */
export async function headBackward (be: ComputeBackend, p: HeadParams, a: HeadActivations, x: Tensor, dx: Tensor, dlossScale: number): Promise<void> {
  await be.fill(a.dlogits, 0)
  await be.crossEntropyBackward(a.dlogits, a.probs, a.targets, dlossScale)
  await be.fill(a.dlnf, 0)
  await be.matmulBackward(a.dlnf, p.lmHead.g, null, a.dlogits, a.lnf, p.lmHead.w)
  await be.layernormBackward(dx, p.lnfw.g, p.lnfb.g, a.dlnf, x, p.lnfw.w, a.lnfMean, a.lnfRstd)
}
