// The Llama block and the llama ends of the model, llm.c style like layers.ts: one plain forward
// and one backward per layer, in terms of ComputeBackend kernels only. Shapes: B batch, T time,
// C channels, NH heads, H the SwiGLU width, V vocab. Backward kernels ACCUMULATE, so each
// backward zeroes its scratch before use; parameter gradients are zeroed once per step.
//
// block:  x [B,T,C]
//   ln1 = rmsnorm(x) * w_in                         [B,T,C], rstd [B,T]
//   qkv = rope(ln1 @ Wqkv^T)                        [B,T,3C], rotated in place (rope is linear:
//                                                   its backward needs no input); with grouped-query
//                                                   attention Wqkv [C + 2 Ckv, C] is first expanded
//                                                   to [3C, C] by repeating K/V heads (gqa.ts)
//   r2  = x + attn(qkv) @ Wo^T                      causal attention, NH heads (full or flash,
//                                                   layers.ts' attention helpers)
//   ln2 = rmsnorm(r2) * w_post                      [B,T,C]
//   r3  = r2 + swiglu(ln2 @ Wgu^T) @ Wdown^T        gate|up [B,T,2H] -> [B,T,H] -> [B,T,C]
import type { ComputeBackend, Tensor } from '../contracts/backend.ts'
import { expandQkvWeight, qkvMatmulBackward, type KvExpansion } from './gqa.ts'
import { allocAttention, allocAttentionScratch, attentionBackward, attentionForward, type AttentionMode, type Param } from './layers.ts'

export interface LlamaBlockParams {
  attnNorm: Param // [C]
  qkvw: Param // [3C,C]; [C + 2 Ckv, C] with grouped-query attention
  ow: Param // [C,C]
  ffnNorm: Param // [C]
  gateUpw: Param // [2H,C]
  downw: Param // [C,H]
}

/** Hyperparameters the block kernels take. */
export interface LlamaDims {
  readonly NH: number
  readonly theta: number
  readonly eps: number
  /** Grouped-query attention's weight expansion (the stage's shared buffers); null or absent: MHA. */
  readonly kv?: KvExpansion | null
}

/** Activations one block keeps from forward for backward. */
export interface LlamaBlockActivations {
  ln1: Tensor, ln1Rstd: Tensor // [B,T,C], [B,T]
  qkv: Tensor // [B,T,3C] after rope (what attention saw)
  atty: Tensor // [B,T,C] attention output before o_proj
  preatt: Tensor | null, att: Tensor | null // [B,NH,T,T]; null with flash attention
  lse: Tensor | null // [B,NH,T] flash attention only
  attproj: Tensor // [B,T,C]
  residual2: Tensor // [B,T,C] x + attproj
  ln2: Tensor, ln2Rstd: Tensor // [B,T,C], [B,T]
  gateUp: Tensor // [B,T,2H]
  hidden: Tensor // [B,T,H] silu(gate) * up
  down: Tensor // [B,T,C]
  residual3: Tensor // [B,T,C] block output
}

/** Gradient scratch shared by every block of a stage (blocks run backward one at a time). */
export interface LlamaBlockScratch {
  dres2: Tensor // [B,T,C]
  dln: Tensor // [B,T,C]
  dqkv: Tensor // [B,T,3C] w.r.t. the rotated qkv
  dqkvRaw: Tensor // [B,T,3C] w.r.t. qkv before rope
  datty: Tensor // [B,T,C]
  dpreatt: Tensor | null, datt: Tensor | null // [B,NH,T,T]; null with flash attention
  dgateUp: Tensor // [B,T,2H]
  dhidden: Tensor // [B,T,H]
}

export function allocLlamaBlockActivations (be: ComputeBackend, B: number, T: number, C: number, NH: number, H: number, mode: AttentionMode = 'full'): LlamaBlockActivations {
  return {
    ln1: be.alloc([B, T, C]),
    ln1Rstd: be.alloc([B, T]),
    qkv: be.alloc([B, T, 3 * C]),
    atty: be.alloc([B, T, C]),
    ...allocAttention(be, B, T, NH, mode),
    attproj: be.alloc([B, T, C]),
    residual2: be.alloc([B, T, C]),
    ln2: be.alloc([B, T, C]),
    ln2Rstd: be.alloc([B, T]),
    gateUp: be.alloc([B, T, 2 * H]),
    hidden: be.alloc([B, T, H]),
    down: be.alloc([B, T, C]),
    residual3: be.alloc([B, T, C])
  }
}

export function allocLlamaBlockScratch (be: ComputeBackend, B: number, T: number, C: number, NH: number, H: number, mode: AttentionMode = 'full'): LlamaBlockScratch {
  return {
    dres2: be.alloc([B, T, C]),
    dln: be.alloc([B, T, C]),
    dqkv: be.alloc([B, T, 3 * C]),
    dqkvRaw: be.alloc([B, T, 3 * C]),
    datty: be.alloc([B, T, C]),
    ...allocAttentionScratch(be, B, T, NH, mode),
    dgateUp: be.alloc([B, T, 2 * H]),
    dhidden: be.alloc([B, T, H])
  }
}

/** x [B,T,C] -> a.residual3 [B,T,C]. */
export async function llamaBlockForward (be: ComputeBackend, p: LlamaBlockParams, a: LlamaBlockActivations, x: Tensor, d: LlamaDims): Promise<void> {
  await be.rmsnormForward(a.ln1, a.ln1Rstd, x, p.attnNorm.w, d.eps)
  await be.matmulForward(a.qkv, a.ln1, await expandQkvWeight(be, d.kv, p.qkvw), null)
  await be.ropeForward(a.qkv, a.qkv, d.NH, d.theta)
  await attentionForward(be, a, d.NH)
  await be.matmulForward(a.attproj, a.atty, p.ow.w, null)
  await be.residualForward(a.residual2, x, a.attproj)
  await be.rmsnormForward(a.ln2, a.ln2Rstd, a.residual2, p.ffnNorm.w, d.eps)
  await be.matmulForward(a.gateUp, a.ln2, p.gateUpw.w, null)
  await be.swigluForward(a.hidden, a.gateUp)
  await be.matmulForward(a.down, a.hidden, p.downw.w, null)
  await be.residualForward(a.residual3, a.residual2, a.down)
}

/**
 * dres [B,T,C]: on entry the gradient w.r.t. the block output (residual3); on return the gradient
 * w.r.t. the block input x. Accumulates the block's parameter gradients.
 */
export async function llamaBlockBackward (be: ComputeBackend, p: LlamaBlockParams, a: LlamaBlockActivations, s: LlamaBlockScratch, x: Tensor, dres: Tensor, d: LlamaDims): Promise<void> {
  // MLP: residual3 = residual2 + down_proj(swiglu(gate_up_proj(rmsnorm(residual2))))
  await be.fill(s.dhidden, 0)
  await be.matmulBackward(s.dhidden, p.downw.g, null, dres, a.hidden, p.downw.w)
  await be.fill(s.dgateUp, 0)
  await be.swigluBackward(s.dgateUp, s.dhidden, a.gateUp)
  await be.fill(s.dln, 0)
  await be.matmulBackward(s.dln, p.gateUpw.g, null, s.dgateUp, a.ln2, p.gateUpw.w)
  await be.copy(s.dres2, dres) // the residual path carries dres straight through
  await be.rmsnormBackward(s.dres2, p.ffnNorm.g, s.dln, a.residual2, p.ffnNorm.w, a.ln2Rstd)
  // attention: residual2 = x + o_proj(attn(rope(qkv_proj(rmsnorm(x)))))
  await be.fill(s.datty, 0)
  await be.matmulBackward(s.datty, p.ow.g, null, s.dres2, a.atty, p.ow.w)
  await be.fill(s.dqkv, 0)
  await attentionBackward(be, a, s, s.dqkv, s.datty, d.NH)
  await be.fill(s.dqkvRaw, 0)
  await be.ropeBackward(s.dqkvRaw, s.dqkv, d.NH, d.theta)
  await be.fill(s.dln, 0)
  await qkvMatmulBackward(be, d.kv, p.qkvw, s.dln, s.dqkvRaw, a.ln1)
  await be.copy(dres, s.dres2)
  await be.rmsnormBackward(dres, p.attnNorm.g, s.dln, x, p.attnNorm.w, a.ln1Rstd)
}

// ---- ends: token embedding (no position table), final RMSNorm + LM head ---------------------

/**
 * out [B,T,C] = embed[tokens]. The backend's encoder adds a position row; llama passes a zero
 * table `zeroPos` [T,C] and discards that row's gradient in `dposSink` [T,C].
 */
export async function llamaEmbeddingForward (be: ComputeBackend, embed: Param, zeroPos: Tensor, out: Tensor, tokens: Tensor): Promise<void> {
  await be.encoderForward(out, tokens, embed.w, zeroPos)
}

export async function llamaEmbeddingBackward (be: ComputeBackend, embed: Param, dposSink: Tensor, dout: Tensor, tokens: Tensor): Promise<void> {
  await be.encoderBackward(embed.g, dposSink, dout, tokens)
}

export interface LlamaHeadParams {
  norm: Param // [C]
  lmHead: Param // [V,C]
}

/** x [B,T,C] -> logits [B,T,V]: final RMSNorm into `ln` [B,T,C] (rstd [B,T]), then the head. */
export async function llamaHeadForward (be: ComputeBackend, p: LlamaHeadParams, ln: Tensor, rstd: Tensor, logits: Tensor, x: Tensor, eps: number): Promise<void> {
  await be.rmsnormForward(ln, rstd, x, p.norm.w, eps)
  await be.matmulForward(logits, ln, p.lmHead.w, null)
}

/** dlogits [B,T,V] (already holding the loss gradient) back to dx [B,T,C] (accumulated); dln is scratch. */
export async function llamaHeadBackward (be: ComputeBackend, p: LlamaHeadParams, ln: Tensor, rstd: Tensor, dlogits: Tensor, dln: Tensor, x: Tensor, dx: Tensor): Promise<void> {
  await be.fill(dln, 0)
  await be.matmulBackward(dln, p.lmHead.g, null, dlogits, ln, p.lmHead.w)
  await be.rmsnormBackward(dx, p.norm.g, dln, x, p.norm.w, rstd)
}
