// Reductions. colsum: sums of columns over a range of rows (bias and LayerNorm parameter gradients,
// the position-embedding gradient), one thread per (column, chunk of rows), no barriers; the backend
// chains passes (partials per chunk, then the sum of the partials) for long columns. sumSquares: an
// overflow-safe sum of squares (scaled as in BLAS nrm2) with NaN/Inf flags, one partial per workgroup,
// finished in float64 on the host.
import { LINEAR, WG1, ro, rw } from './kernel.ts'
import type { KernelDef } from './kernel.ts'

/** Rows one colsum thread sums (the chunk of a pass). */
export const COLSUM_ROWS = 256

/**
 * Threads n = K*J (J = ceil(rows/R)): s = sum over rows [jR, min(jR+R, rows)) of src[r*ld + off + k].
 * mode 0: dst[j*K + k] = s (partials); mode 1 (J = 1): dst[k] += s.
 */
export const colsum: KernelDef = {
  key: 'colsum',
  params: [['n', 'u32'], ['K', 'u32'], ['rows', 'u32'], ['ld', 'u32'], ['off', 'u32'], ['R', 'u32'], ['mode', 'u32']],
  bindings: [rw('dst'), ro('src')],
  workgroup: [WG1, 1],
  body: `${LINEAR} if (i >= p.n) { return; }
  let j = i / p.K;
  let k = i - j * p.K;
  let r1 = min(j * p.R + p.R, p.rows);
  var s = 0.0;
  for (var r = j * p.R; r < r1; r++) { s += src[r * p.ld + p.off + k]; }
  if (p.mode == 0u) { dst[i] = s; } else { dst[k] = dst[k] + s; }`
}

export const SUMSQ_WG = 256
/** At most this many workgroups (partials) per sumSquares; each thread strides over the rest. */
export const SUMSQ_MAX_GROUPS = 1024

/**
 * partials[3g..3g+2] = (scale, ssq, flags) of workgroup g, with sum of squares = scale^2 * ssq
 * (scale = the largest |x| seen, so nothing overflows float32); flags (stored as a float: 0..3) bit 0: a NaN, bit 1: an Inf.
 * Threads stride over the tensor with step = groups * SUMSQ_WG; a tree in workgroup memory combines
 * the 256 threads' pairs (log2(256) = 8 barriers, once per call).
 */
export const sumSquares: KernelDef = {
  key: 'sumsq',
  params: [['n', 'u32'], ['stride', 'u32']],
  bindings: [rw('partials'), ro('x', 'u32')],
  workgroup: [SUMSQ_WG, 1],
  helpers: `
var<workgroup> ws: array<f32, ${SUMSQ_WG}>;
var<workgroup> wq: array<f32, ${SUMSQ_WG}>;
var<workgroup> wf: array<u32, ${SUMSQ_WG}>;
fn combine(s1: f32, q1: f32, s2: f32, q2: f32) -> vec2<f32> {
  let s = max(s1, s2);
  if (s == 0.0) { return vec2<f32>(0.0, 0.0); }
  let r1 = s1 / s; let r2 = s2 / s;
  return vec2<f32>(s, q1 * r1 * r1 + q2 * r2 * r2);
}`,
  body: `
  var sc = 0.0; var q = 0.0; var fl = 0u;
  for (var i = wid.x * ${SUMSQ_WG}u + li; i < p.n; i += p.stride) {
    let u = x[i] & 0x7fffffffu;
    if (u > 0x7f800000u) { fl |= 1u; continue; }
    if (u == 0x7f800000u) { fl |= 2u; continue; }
    if (u == 0u) { continue; }
    let a = bitcast<f32>(u);
    if (a > sc) { let r = sc / a; q = 1.0 + q * r * r; sc = a; } else { let r = a / sc; q += r * r; }
  }
  ws[li] = sc; wq[li] = q; wf[li] = fl;
  workgroupBarrier();
  for (var h = ${SUMSQ_WG / 2}u; h > 0u; h >>= 1u) {
    if (li < h) {
      let c = combine(ws[li], wq[li], ws[li + h], wq[li + h]);
      ws[li] = c.x; wq[li] = c.y; wf[li] = wf[li] | wf[li + h];
    }
    workgroupBarrier();
  }
  if (li == 0u) {
    partials[3u * wid.x] = ws[0]; partials[3u * wid.x + 1u] = wq[0]; partials[3u * wid.x + 2u] = f32(wf[0]);
  }`
}
