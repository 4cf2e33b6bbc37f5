// Grouped-query attention at the model level: NKV K/V heads, each shared by a group of NH / NKV
// query heads (transformers' repeat_kv: query head h reads K/V head floor(h / (NH / NKV))).
//
// The attention and RoPE kernels take qkv [B,T,3C] with NH heads each of q, k and v. Repeating the
// K/V heads of the activations is the same as repeating the K/V rows of the projection weight, so
// the block keeps its parameter Wqkv [C + 2 Ckv, C] and, before its qkv matmul, expands it into the
// MHA-shaped Weff [3C, C] (q rows as they are, each K and V head's hd rows once per query head of
// its group). The attention kernels then see plain multi-head attention. In backward the matmul
// gives dWeff [3C, C], and summing each group's repeated rows back onto their source row is the
// gradient of the repeat. Both moves are a row gather and its scatter-add: the encoder kernel pair
// (out[n] = wte[ids[n]] + wpe[0] with a zero wpe row; dwte[ids[n]] += dout[n]), so every backend
// gets GQA with no new kernel. Cost per block and pass: O(3C x C) copies, nothing of size B x T.
// The qkv matmul itself runs at MHA's width (3C outputs): GQA saves parameters, gradients and AdamW
// state here, not projection FLOPs.
import type { ComputeBackend, Tensor } from '../contracts/backend.ts'
import type { Param } from './layers.ts'

/** The per-stage buffers of the expansion, shared by the stage's blocks (they run one at a time). */
export interface KvExpansion {
  readonly ids: Tensor // i32 [3C,1]: the source row of Wqkv for each row of Weff
  readonly zeroRow: Tensor // [1,C] the encoder's position row, all zero
  readonly sinkRow: Tensor // [1,C] that row's gradient, never read
  readonly rows: Tensor // [3C,1,C] the gathered rows (the encoder's [B,T,C] view of Weff / dWeff)
  readonly weff: Tensor // [3C,C] the expanded weight, as the matmul takes it
  readonly dweff: Tensor // [3C,C] its gradient
}

/** Source row in Wqkv [C + 2 Ckv, C] of each row of the expanded Weff [3C, C]. */
export function kvExpansionRows (C: number, NH: number, NKV: number): Int32Array {
  const hd = C / NH
  const group = NH / NKV
  const Ckv = NKV * hd
  const ids = new Int32Array(3 * C)
  for (let r = 0; r < 3 * C; r++) {
    const part = Math.floor(r / C) // 0 q, 1 k, 2 v
    const within = r % C
    if (part === 0) { ids[r] = r; continue }
    const kv = Math.floor(Math.floor(within / hd) / group)
    ids[r] = C + (part - 1) * Ckv + kv * hd + (within % hd)
  }
  return ids
}

/** The expansion buffers for a llama stage with NKV < NH, or null (plain MHA: Wqkv is already [3C, C]). */
export function allocKvExpansion (be: ComputeBackend, C: number, NH: number, NKV: number): KvExpansion | null {
  return NKV === NH ? null : createKvExpansion(be, C, NH, NKV)
}

/** The expansion buffers for any NKV dividing NH (NKV = NH gives the identity: tests compare it with MHA). */
export function createKvExpansion (be: ComputeBackend, C: number, NH: number, NKV: number): KvExpansion {
  return {
    ids: be.upload(kvExpansionRows(C, NH, NKV), [3 * C, 1]),
    zeroRow: be.alloc([1, C]),
    sinkRow: be.alloc([1, C]),
    rows: be.alloc([3 * C, 1, C]),
    weff: be.alloc([3 * C, C]),
    dweff: be.alloc([3 * C, C])
  }
}

export function freeKvExpansion (be: ComputeBackend, e: KvExpansion | null): void {
  if (e == null) return
  for (const t of Object.values(e)) be.free(t)
}

/** Floats (i32 ids counted as one each) the expansion holds: the memory estimate's GQA term. */
export function kvExpansionFloats (C: number): number {
  return 3 * C + 2 * C + 9 * C * C
}

/** e.weff [3C,C] = Wqkv's rows repeated per group; returns the weight the qkv matmul takes. */
export async function expandQkvWeight (be: ComputeBackend, e: KvExpansion | null | undefined, qkvw: Param): Promise<Tensor> {
  if (e == null) return qkvw.w
  await be.encoderForward(e.rows, e.ids, qkvw.w, e.zeroRow)
  await be.copy(e.weff, e.rows)
  return e.weff
}

/**
 * The qkv matmul's backward with the expansion: dinp += dqkv @ Weff, and Wqkv's gradient
 * accumulates each group's summed rows of dWeff. Without an expansion, the plain matmul backward.
 */
export async function qkvMatmulBackward (be: ComputeBackend, e: KvExpansion | null | undefined, qkvw: Param, dinp: Tensor, dqkv: Tensor, inp: Tensor): Promise<void> {
  if (e == null) { await be.matmulBackward(dinp, qkvw.g, null, dqkv, inp, qkvw.w); return }
  const weff = await expandQkvWeight(be, e, qkvw) // rebuilt: the stage's other blocks used it since
  await be.fill(e.dweff, 0)
  await be.matmulBackward(dinp, e.dweff, null, dqkv, inp, weff)
  await be.copy(e.rows, e.dweff)
  await be.encoderBackward(qkvw.g, e.sinkRow, e.rows, e.ids)
}
