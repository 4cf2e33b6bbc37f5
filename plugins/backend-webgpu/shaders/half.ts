// f16 operand staging for the matmuls of the f16 option (docs/backend-webgpu.md, "f16"). Before a
// matmul reads an f32 operand as f16, two kernels run on the GPU, with no host round trip:
//   absmax: the largest finite |x| of the operand, as float bits, by atomicMax into a scale slot
//           (for non-negative floats the bit pattern orders like the value);
//   toHalf: x * 2^k rounded to f16, with k chosen from that maximum so that the largest |x * 2^k|
//           lies in [2^(HALF_TOP-1), 2^HALF_TOP). NaN and +-Inf keep their class (explicit bits).
// The power-of-two scale is exact; the matmul undoes it on its f32 result. A per-tensor scale is why
// no loss scaling is needed: a gradient of 1e-9 is scaled up before rounding, never flushed to 0.
import { LINEAR, WG1, ro, rw } from './kernel.ts'
import type { KernelDef } from './kernel.ts'

/**
 * Scaled operands stay below 2^HALF_TOP, so one product stays below 2^12 and the four-term f16 sums
 * of the vec4 matmuls below 2^14: far from f16's maximum (65504).
 */
export const HALF_TOP = 6
/** Threads per absmax workgroup; threads stride over the operand. */
export const ABSMAX_WG = 256
/** At most this many absmax workgroups (each ends with one atomicMax on the slot). */
export const ABSMAX_MAX_GROUPS = 512

/** WGSL helpers shared by toHalf and the f16 matmuls: the scale exponent from a slot's max bits. */
export const HALF_SCALE_WGSL = `
fn halfScaleExp(maxBits: u32) -> i32 {
  if (maxBits == 0u) { return 0; }
  let e = i32(maxBits >> 23u) - 127;
  return clamp(${HALF_TOP - 1} - e, -126, 126);
}
fn pow2(k: i32) -> f32 { return bitcast<f32>(u32(k + 127) << 23u); }
`

/** slot[0] = max(slot[0], bits of the largest finite |x|). The slot must be zeroed first. */
export const absmax: KernelDef = {
  key: 'absmax',
  params: [['n', 'u32'], ['stride', 'u32']],
  bindings: [rw('slot', 'atomic<u32>'), ro('x', 'u32')],
  workgroup: [ABSMAX_WG, 1],
  helpers: 'var<workgroup> wmax: atomic<u32>;',
  body: `  var m = 0u;
  for (var i = wid.x * ${ABSMAX_WG}u + li; i < p.n; i += p.stride) {
    let b = x[i] & 0x7fffffffu;
    if (b < 0x7f800000u) { m = max(m, b); }
  }
  atomicMax(&wmax, m);
  workgroupBarrier();
  if (li == 0u) { atomicMax(&slot[0], atomicLoad(&wmax)); }`
}

/** Threads n4 = ceil(n/4): h[i] = the four elements 4i..4i+3 of x scaled and rounded (0 past n). */
export const toHalf: KernelDef = {
  key: 'to_half',
  params: [['n4', 'u32'], ['n', 'u32']],
  bindings: [rw('h', 'vec4<f16>'), ro('x', 'u32'), ro('slot', 'u32')],
  workgroup: [WG1, 1],
  enables: ['f16'],
  helpers: `${HALF_SCALE_WGSL}
fn half(bits: u32, s: f32) -> f16 {
  if ((bits & 0x7f800000u) == 0x7f800000u) {
    // NaN stays NaN, +-Inf stays +-Inf (a cast of a non-finite value is undefined in WGSL)
    let hb = ((bits >> 16u) & 0x8000u) | 0x7c00u | select(0u, 0x200u, (bits & 0x7fffffu) != 0u);
    return bitcast<vec2<f16>>(hb).x;
  }
  return f16(bitcast<f32>(bits) * s);
}`,
  body: `  ${LINEAR} if (i >= p.n4) { return; }
  let s = pow2(halfScaleExp(slot[0]));
  var v = vec4<f16>();
  for (var j = 0u; j < 4u; j++) {
    let e = 4u * i + j;
    if (e < p.n) { v[j] = half(x[e], s); }
  }
  h[i] = v;`
}
