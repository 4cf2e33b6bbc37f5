// LayerNorm over the last dim C of inp [N,C], eps 1e-5. Forward and the dinp part of backward: one
// thread per row. The weight/bias gradients: one thread per (column, chunk of rows) writing partial
// sums [J, 2C] (dweight | dbias), which the backend then sums into the gradients with colsum.
import { LINEAR, WG1, ro, rw } from './kernel.ts'
import type { KernelDef } from './kernel.ts'

/** out = (x - mean) * rstd * w + b; mean, rstd [N] (two-pass variance). n = N threads. */
export const layernormForward: KernelDef = {
  key: 'ln_fwd',
  params: [['N', 'u32'], ['C', 'u32']],
  bindings: [rw('out'), rw('mean'), rw('rstd'), ro('inp'), ro('w'), ro('b')],
  workgroup: [WG1, 1],
  body: `${LINEAR} if (i >= p.N) { return; }
  let base = i * p.C;
  var s = 0.0;
  for (var c = 0u; c < p.C; c++) { s += inp[base + c]; }
  let m = s / f32(p.C);
  var v = 0.0;
  for (var c = 0u; c < p.C; c++) { let d = inp[base + c] - m; v += d * d; }
  let r = 1.0 / sqrt(v / f32(p.C) + 1e-5);
  for (var c = 0u; c < p.C; c++) { out[base + c] = (inp[base + c] - m) * r * w[c] + b[c]; }
  mean[i] = m;
  rstd[i] = r;`
}

/** dinp += (w*dout - mean(w*dout) - norm * mean(w*dout*norm)) * rstd. n = N threads. */
export const layernormBackwardInput: KernelDef = {
  key: 'ln_bwd_dx',
  params: [['N', 'u32'], ['C', 'u32']],
  bindings: [rw('dinp'), ro('dout'), ro('inp'), ro('w'), ro('mean'), ro('rstd')],
  workgroup: [WG1, 1],
  body: `${LINEAR} if (i >= p.N) { return; }
  let base = i * p.C;
  let m = mean[i];
  let r = rstd[i];
  var dm = 0.0;
  var dnm = 0.0;
  for (var c = 0u; c < p.C; c++) {
    let dn = w[c] * dout[base + c];
    dm += dn;
    dnm += dn * (inp[base + c] - m) * r;
  }
  dm = dm / f32(p.C);
  dnm = dnm / f32(p.C);
  for (var c = 0u; c < p.C; c++) {
    let norm = (inp[base + c] - m) * r;
    let dn = w[c] * dout[base + c];
    dinp[base + c] = dinp[base + c] + (dn - dm - norm * dnm) * r;
  }`
}

/**
 * part[j, c] = sum over rows r of chunk j of norm[r,c] * dout[r,c];  part[j, C + c] = sum of dout[r,c].
 * n = C*J threads, chunk R rows.
 */
export const layernormBackwardParams: KernelDef = {
  key: 'ln_bwd_dwdb',
  params: [['n', 'u32'], ['N', 'u32'], ['C', 'u32'], ['R', 'u32']],
  bindings: [rw('part'), ro('dout'), ro('inp'), ro('mean'), ro('rstd')],
  workgroup: [WG1, 1],
  body: `${LINEAR} if (i >= p.n) { return; }
  let j = i / p.C;
  let c = i - j * p.C;
  let r1 = min(j * p.R + p.R, p.N);
  var sw = 0.0;
  var sb = 0.0;
  for (var r = j * p.R; r < r1; r++) {
    let d = dout[r * p.C + c];
    sw += (inp[r * p.C + c] - mean[r]) * rstd[r] * d;
    sb += d;
  }
  part[j * 2u * p.C + c] = sw;
  part[j * 2u * p.C + p.C + c] = sb;`
}
