// WGSL kernels of the Llama layers: RMSNorm (one thread per row; the weight gradient as partial
// column sums [J, C] that the backend sums with colsum, as layernorm's), rotary embeddings (one thread
// per rotated pair or v element, angles from a host-computed float64 cos/sin table), SwiGLU (one
// thread per output element). Backward kernels accumulate (+=), as the contract says.
import { LINEAR, WG1, ro, rw } from './kernel.ts'
import type { KernelDef } from './kernel.ts'

const WG = [WG1, 1] as const

/** rstd = 1/sqrt(mean(x^2) + eps); out = x * rstd * w. n = N threads. */
export const rmsnormForward: KernelDef = {
  key: 'rms_fwd',
  params: [['N', 'u32'], ['C', 'u32'], ['eps', 'f32']],
  bindings: [rw('out'), rw('rstd'), ro('inp'), ro('w')],
  workgroup: WG,
  body: `${LINEAR} if (i >= p.N) { return; }
  let base = i * p.C;
  var ss = 0.0;
  for (var c = 0u; c < p.C; c++) { let x = inp[base + c]; ss += x * x; }
  let r = 1.0 / sqrt(ss / f32(p.C) + p.eps);
  for (var c = 0u; c < p.C; c++) { out[base + c] = inp[base + c] * r * w[c]; }
  rstd[i] = r;`
}

/** dinp += rstd * (w*dout - x * rstd^2 * mean(w*dout*x)). n = N threads. */
export const rmsnormBackwardInput: KernelDef = {
  key: 'rms_bwd_dx',
  params: [['N', 'u32'], ['C', 'u32']],
  bindings: [rw('dinp'), ro('dout'), ro('inp'), ro('w'), ro('rstd')],
  workgroup: WG,
  body: `${LINEAR} if (i >= p.N) { return; }
  let base = i * p.C;
  let r = rstd[i];
  var dot = 0.0;
  for (var c = 0u; c < p.C; c++) { dot += w[c] * dout[base + c] * inp[base + c]; }
  let k = dot * r * r / f32(p.C);
  for (var c = 0u; c < p.C; c++) {
    dinp[base + c] = dinp[base + c] + r * (w[c] * dout[base + c] - inp[base + c] * k);
  }`
}

/** part[j, c] = sum over rows r of chunk j of dout[r,c] * x[r,c] * rstd[r]. n = J*C threads, chunk R rows. */
export const rmsnormBackwardWeight: KernelDef = {
  key: 'rms_bwd_dw',
  params: [['n', 'u32'], ['N', 'u32'], ['C', 'u32'], ['R', 'u32']],
  bindings: [rw('part'), ro('dout'), ro('inp'), ro('rstd')],
  workgroup: WG,
  body: `${LINEAR} if (i >= p.n) { return; }
  let j = i / p.C;
  let c = i - j * p.C;
  let r1 = min(j * p.R + p.R, p.N);
  var s = 0.0;
  for (var r = j * p.R; r < r1; r++) { s += dout[r * p.C + c] * inp[r * p.C + c] * rstd[r]; }
  part[i] = s;`
}

/**
 * Rotary embedding on qkv rows [N, 3C] (row n at position n % T). Thread j < C of a row rotates pair
 * (k, k + half) of q/k head j / half by the table's angle (sin times sign: -1 is the transpose, for
 * the backward); thread j >= C handles v element j - C. acc = 1: out += result, else out = result.
 * tab[2 * (t * half + k)] = cos, [.. + 1] = sin. n = N * 2C threads.
 */
export const rope: KernelDef = {
  key: 'rope',
  params: [['n', 'u32'], ['C', 'u32'], ['T', 'u32'], ['half', 'u32'], ['sign', 'f32'], ['acc', 'u32']],
  bindings: [rw('out'), ro('inp'), ro('tab')],
  workgroup: WG,
  body: `${LINEAR} if (i >= p.n) { return; }
  let row = i / (2u * p.C);
  let j = i - row * 2u * p.C;
  let rbase = row * 3u * p.C;
  if (j >= p.C) {
    let e = rbase + p.C + j; // v: channel 2C + (j - C)
    var y = inp[e];
    if (p.acc == 1u) { y = y + out[e]; }
    out[e] = y;
    return;
  }
  let h = j / p.half;
  let k = j - h * p.half;
  let a = rbase + h * 2u * p.half + k;
  let b = a + p.half;
  let ti = 2u * ((row % p.T) * p.half + k);
  let cs = tab[ti];
  let sn = p.sign * tab[ti + 1u];
  let x1 = inp[a];
  let x2 = inp[b];
  var y1 = x1 * cs - x2 * sn;
  var y2 = x1 * sn + x2 * cs;
  if (p.acc == 1u) { y1 = y1 + out[a]; y2 = y2 + out[b]; }
  out[a] = y1;
  out[b] = y2;`
}

/** out[n, k] = silu(inp[n, k]) * inp[n, H + k]. n = N*H threads. */
export const swigluForward: KernelDef = {
  key: 'swiglu_fwd',
  params: [['n', 'u32'], ['H', 'u32']],
  bindings: [rw('out'), ro('inp')],
  workgroup: WG,
  body: `${LINEAR} if (i >= p.n) { return; }
  let r = i / p.H;
  let g0 = i + r * p.H; // r * 2H + k
  let g = inp[g0];
  out[i] = g / (1.0 + exp(-g)) * inp[g0 + p.H];`
}

/** dgate += dout * up * s * (1 + g * (1 - s)), dup += dout * g * s, s = sigmoid(g). n = N*H threads. */
export const swigluBackward: KernelDef = {
  key: 'swiglu_bwd',
  params: [['n', 'u32'], ['H', 'u32']],
  bindings: [rw('dinp'), ro('dout'), ro('inp')],
  workgroup: WG,
  body: `${LINEAR} if (i >= p.n) { return; }
  let r = i / p.H;
  let g0 = i + r * p.H;
  let g = inp[g0];
  let s = 1.0 / (1.0 + exp(-g));
  let d = dout[i];
  dinp[g0] = dinp[g0] + d * inp[g0 + p.H] * s * (1.0 + g * (1.0 - s));
  dinp[g0 + p.H] = dinp[g0 + p.H] + d * g * s;`
}
