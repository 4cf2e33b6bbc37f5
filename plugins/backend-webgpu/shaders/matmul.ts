// Register-tiled matmul without workgroup memory or barriers (lavapipe pays dearly for barriers; see
// docs/backend-webgpu.md for the shared-memory tiles planned for real GPUs). Each thread computes a
// TM x 4 block of out[M,N] in registers; a workgroup of wgX x wgY threads covers (wgY*TM) x (wgX*4).
//
//   out[m,n] = (acc ? out[m,n] : 0) + (bias ? bias[n] : 0) + sum_k A(m,k) B(k,n)
//
// Layouts (row-major storage): 'nt': A [M,K], B [N,K]   forward:       out = inp @ W^T
//                              'nn': A [M,K], B [K,N]   input grad:    dinp += dout @ W
//                              'tn': A [K,M], B [K,N]   weight grad:   dW += dout^T @ inp
// The vec4 variants load 4 floats at a time along a contiguous dimension; they need that dimension
// to be a multiple of 4 (the backend picks the scalar variant otherwise).
//
// Precision 'f16': A and B are f16 copies scaled by powers of two (shaders/half.ts: toHalf, whose
// slots scaleA/scaleB this kernel reads); products and the vec4 variants' four-term sums are f16,
// accumulation is f32, and the store undoes both scales exactly. Bias and acc stay f32.
import { ro, rw } from './kernel.ts'
import type { KernelDef } from './kernel.ts'
import { HALF_SCALE_WGSL } from './half.ts'

export type MatmulLayout = 'nt' | 'nn' | 'tn'

/** Tile parameters, tunable per device (docs/backend-webgpu.md). */
export interface MatmulTile {
  /** Threads per workgroup along N (each covers 4 columns). */
  readonly wgX: number
  /** Threads per workgroup along M. */
  readonly wgY: number
  /** Rows per thread (a multiple of 4 for the vec4 'tn' variant). */
  readonly tm: number
}

export const DEFAULT_MATMUL_TILE: MatmulTile = { wgX: 8, wgY: 8, tm: 4 }

/** Whether the vec4 variant applies to these sizes. */
export function matmulVec4 (layout: MatmulLayout, M: number, N: number, K: number, tile: MatmulTile): boolean {
  if (layout === 'nt') return K % 4 === 0
  if (layout === 'nn') return K % 4 === 0 && N % 4 === 0
  return M % 4 === 0 && N % 4 === 0 && tile.tm % 4 === 0
}

/** Workgroup counts (x, y) for out[M,N]. */
export function matmulGrid (M: number, N: number, tile: MatmulTile): [number, number] {
  return [Math.max(1, Math.ceil(N / (4 * tile.wgX))), Math.max(1, Math.ceil(M / (tile.tm * tile.wgY)))]
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i)

export type MatmulPrecision = 'f32' | 'f16'

export function matmulKernel (layout: MatmulLayout, vec4: boolean, tile: MatmulTile, precision: MatmulPrecision = 'f32'): KernelDef {
  const { wgX, wgY, tm } = tile
  if (!Number.isInteger(wgX) || !Number.isInteger(wgY) || !Number.isInteger(tm) || wgX < 1 || wgY < 1 || tm < 1) {
    throw new Error(`matmul tile must be positive integers, got ${JSON.stringify(tile)}`)
  }
  if (vec4 && layout === 'tn' && tm % 4 !== 0) throw new Error('matmul tile: tm must be a multiple of 4 for the vec4 tn variant')
  const half = precision === 'f16'
  const ft = half ? 'f16' : 'f32'
  const el = vec4 ? `vec4<${ft}>` as const : ft
  // f16 partial products widen to f32 before they are accumulated
  const wide = (x: string): string => half ? `vec4<f32>(${x})` : x
  const R = range(tm)
  const head = `let n0 = (wid.x * ${wgX}u + lid.x) * 4u;
  let m0 = (wid.y * ${wgY}u + lid.y) * ${tm}u;
  if (m0 >= p.M || n0 >= p.N) { return; }
  let ml = p.M - 1u;
  let nl = p.N - 1u;
  var acc: array<vec4<f32>, ${tm}>;`
  let loop: string
  if (!vec4) {
    const A = (m: string): string => layout === 'tn' ? `a[k * p.M + ${m}]` : `a[${m} * p.K + k]`
    const B = (n: string): string => layout === 'nt' ? `b[${n} * p.K + k]` : `b[k * p.N + ${n}]`
    loop = `${R.map(i => `let r${i} = min(m0 + ${i}u, ml);`).join(' ')}
  let c0 = n0; let c1 = min(n0 + 1u, nl); let c2 = min(n0 + 2u, nl); let c3 = min(n0 + 3u, nl);
  for (var k = 0u; k < p.K; k++) {
    let bv = vec4<${ft}>(${B('c0')}, ${B('c1')}, ${B('c2')}, ${B('c3')});
    ${R.map(i => `acc[${i}] += ${wide(`${A(`r${i}`)} * bv`)};`).join('\n    ')}
  }`
  } else if (layout === 'nt') {
    loop = `let K4 = p.K / 4u;
  ${R.map(i => `let r${i} = min(m0 + ${i}u, ml) * K4;`).join(' ')}
  let c0 = n0 * K4; let c1 = min(n0 + 1u, nl) * K4; let c2 = min(n0 + 2u, nl) * K4; let c3 = min(n0 + 3u, nl) * K4;
  for (var k = 0u; k < K4; k++) {
    let b0 = b[c0 + k]; let b1 = b[c1 + k]; let b2 = b[c2 + k]; let b3 = b[c3 + k];
    ${R.map(i => `{ let av = a[r${i} + k]; acc[${i}] += ${wide(`vec4<${ft}>(dot(av, b0), dot(av, b1), dot(av, b2), dot(av, b3))`)}; }`).join('\n    ')}
  }`
  } else if (layout === 'nn') {
    loop = `let K4 = p.K / 4u;
  let N4 = p.N / 4u;
  let cn = n0 / 4u;
  ${R.map(i => `let r${i} = min(m0 + ${i}u, ml) * K4;`).join(' ')}
  for (var k = 0u; k < K4; k++) {
    let kb = 4u * k * N4 + cn;
    let b0 = b[kb]; let b1 = b[kb + N4]; let b2 = b[kb + 2u * N4]; let b3 = b[kb + 3u * N4];
    ${R.map(i => `{ let av = a[r${i} + k]; acc[${i}] += ${wide('av.x * b0 + av.y * b1 + av.z * b2 + av.w * b3')}; }`).join('\n    ')}
  }`
  } else {
    const Q = range(tm / 4)
    loop = `let M4 = p.M / 4u;
  let N4 = p.N / 4u;
  let cn = n0 / 4u;
  ${Q.map(q => `let q${q} = min(m0 / 4u + ${q}u, M4 - 1u);`).join(' ')}
  for (var k = 0u; k < p.K; k++) {
    let bv = b[k * N4 + cn];
    ${Q.map(q => `{ let av = a[k * M4 + q${q}]; ${['x', 'y', 'z', 'w'].map((c, r) => `acc[${4 * q + r}] += ${wide(`av.${c} * bv`)};`).join(' ')} }`).join('\n    ')}
  }`
  }
  const store = `for (var i = 0u; i < ${tm}u; i++) {
    let m = m0 + i;
    if (m >= p.M) { break; }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + j;
      if (n >= p.N) { break; }
      var v = acc[i][j]${half ? ' * unA * unB' : ''};
      if (p.bias != 0u) { v += biasv[n]; }
      let o = m * p.N + n;
      if (p.acc != 0u) { v += out[o]; }
      out[o] = v;
    }
  }`
  const unscale = half ? `let unA = pow2(-halfScaleExp(scaleA[0]));
  let unB = pow2(-halfScaleExp(scaleB[0]));` : ''
  return {
    key: `matmul_${layout}_${vec4 ? 'v4' : 's'}_${wgX}x${wgY}x${tm}${half ? '_f16' : ''}`,
    params: [['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['acc', 'u32'], ['bias', 'u32']],
    bindings: [rw('out'), ro('a', el), ro('b', el), ro('biasv'), ...(half ? [ro('scaleA', 'u32'), ro('scaleB', 'u32')] : [])],
    workgroup: [wgX, wgY],
    ...(half ? { enables: ['f16'], helpers: HALF_SCALE_WGSL } : {}),
    body: `  ${head}
  ${unscale}
  ${loop}
  ${store}`
  }
}
