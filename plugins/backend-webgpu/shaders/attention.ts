// Causal multi-head self-attention, llm.c's formulation, as six barrier-free kernels with one thread
// per output element (or per softmax row). qkv [B,T,3C] (q | k | v on the last dim), hs = C/NH,
// preatt/att [B,NH,T,T], scale = 1/sqrt(hs). Masked entries (t2 > t) are written as 0.
import { LINEAR, WG1, ro, rw } from './kernel.ts'
import type { KernelDef } from './kernel.ts'

const P = [['n', 'u32'], ['T', 'u32'], ['C', 'u32'], ['NH', 'u32'], ['hs', 'u32'], ['scale', 'f32']] as const
const WG = [WG1, 1] as const

/** Index decomposition of a [B,NH,T,T] element i into b, h, t (query), t2 (key). */
const ATT_INDEX = `let t2 = i % p.T;
  let r = i / p.T;
  let t = r % p.T;
  let bh = r / p.T;
  let b = bh / p.NH;
  let h = bh % p.NH;
  let C3 = 3u * p.C;`

/** preatt[b,h,t,t2] = q[b,t,h,:] . k[b,t2,h,:] * scale  (n = B*NH*T*T). */
export const attentionScores: KernelDef = {
  key: 'att_scores',
  params: P,
  bindings: [rw('preatt'), ro('qkv')],
  workgroup: WG,
  body: `${LINEAR} if (i >= p.n) { return; }
  ${ATT_INDEX}
  if (t2 > t) { preatt[i] = 0.0; return; }
  let q = (b * p.T + t) * C3 + h * p.hs;
  let k = (b * p.T + t2) * C3 + p.C + h * p.hs;
  var s = 0.0;
  for (var e = 0u; e < p.hs; e++) { s += qkv[q + e] * qkv[k + e]; }
  preatt[i] = s * p.scale;`
}

/** att[row, :] = softmax over t2 <= t of preatt[row, :]; 0 beyond. One thread per row (n = B*NH*T). */
export const attentionSoftmax: KernelDef = {
  key: 'att_softmax',
  params: P,
  bindings: [rw('att'), ro('preatt')],
  workgroup: WG,
  body: `${LINEAR} if (i >= p.n) { return; }
  let t = i % p.T;
  let base = i * p.T;
  var mx = preatt[base];
  for (var t2 = 1u; t2 <= t; t2++) { let x = preatt[base + t2]; if (x > mx) { mx = x; } }
  var s = 0.0;
  for (var t2 = 0u; t2 <= t; t2++) { s += exp(preatt[base + t2] - mx); }
  let inv = 1.0 / s;
  for (var t2 = 0u; t2 <= t; t2++) { att[base + t2] = exp(preatt[base + t2] - mx) * inv; }
  for (var t2 = t + 1u; t2 < p.T; t2++) { att[base + t2] = 0.0; }`
}

/** out[b,t,h*hs+e] = sum over t2 <= t of att[b,h,t,t2] * v[b,t2,h,e]  (n = B*T*C). */
export const attentionValues: KernelDef = {
  key: 'att_values',
  params: P,
  bindings: [rw('out'), ro('att'), ro('qkv')],
  workgroup: WG,
  body: `${LINEAR} if (i >= p.n) { return; }
  let c = i % p.C;
  let bt = i / p.C;
  let t = bt % p.T;
  let b = bt / p.T;
  let h = c / p.hs;
  let row = ((b * p.NH + h) * p.T + t) * p.T;
  let C3 = 3u * p.C;
  var s = 0.0;
  for (var t2 = 0u; t2 <= t; t2++) { s += att[row + t2] * qkv[(b * p.T + t2) * C3 + 2u * p.C + c]; }
  out[i] = s;`
}

/** datt[b,h,t,t2] = v[b,t2,h,:] . dout[b,t,h,:] for t2 <= t, else 0  (n = B*NH*T*T). */
export const attentionBackwardAtt: KernelDef = {
  key: 'att_bwd_datt',
  params: P,
  bindings: [rw('datt'), ro('qkv'), ro('dout')],
  workgroup: WG,
  body: `${LINEAR} if (i >= p.n) { return; }
  ${ATT_INDEX}
  if (t2 > t) { datt[i] = 0.0; return; }
  let v = (b * p.T + t2) * C3 + 2u * p.C + h * p.hs;
  let d = (b * p.T + t) * p.C + h * p.hs;
  var s = 0.0;
  for (var e = 0u; e < p.hs; e++) { s += qkv[v + e] * dout[d + e]; }
  datt[i] = s;`
}

/** dpreatt[row, t2] = att[t2] * (datt[t2] - sum over t3 <= t of att[t3] datt[t3]); one thread per row (n = B*NH*T). */
export const attentionBackwardSoftmax: KernelDef = {
  key: 'att_bwd_softmax',
  params: P,
  bindings: [rw('dpreatt'), ro('att'), ro('datt')],
  workgroup: WG,
  body: `${LINEAR} if (i >= p.n) { return; }
  let t = i % p.T;
  let base = i * p.T;
  var s = 0.0;
  for (var t2 = 0u; t2 <= t; t2++) { s += att[base + t2] * datt[base + t2]; }
  for (var t2 = 0u; t2 <= t; t2++) { dpreatt[base + t2] = att[base + t2] * (datt[base + t2] - s); }
  for (var t2 = t + 1u; t2 < p.T; t2++) { dpreatt[base + t2] = 0.0; }`
}

/**
 * dqkv[b,t,j] += (n = B*T*3C; j = part*C + h*hs + e):
 *   q part: scale * sum over t2 <= t of dpreatt[b,h,t,t2] * k[b,t2,h,e]
 *   k part: scale * sum over tq >= t of dpreatt[b,h,tq,t] * q[b,tq,h,e]
 *   v part:         sum over tq >= t of att[b,h,tq,t] * dout[b,tq,h,e]
 */
export const attentionBackwardQkv: KernelDef = {
  key: 'att_bwd_dqkv',
  params: P,
  bindings: [rw('dqkv'), ro('qkv'), ro('att'), ro('dpreatt'), ro('dout')],
  workgroup: WG,
  body: `${LINEAR} if (i >= p.n) { return; }
  let C3 = 3u * p.C;
  let j = i % C3;
  let bt = i / C3;
  let t = bt % p.T;
  let b = bt / p.T;
  let part = j / p.C;
  let c = j - part * p.C;
  let h = c / p.hs;
  let bh = b * p.NH + h;
  var s = 0.0;
  if (part == 0u) {
    let row = (bh * p.T + t) * p.T;
    for (var t2 = 0u; t2 <= t; t2++) { s += dpreatt[row + t2] * qkv[(b * p.T + t2) * C3 + p.C + c]; }
    s = s * p.scale;
  } else if (part == 1u) {
    for (var tq = t; tq < p.T; tq++) { s += dpreatt[(bh * p.T + tq) * p.T + t] * qkv[(b * p.T + tq) * C3 + c]; }
    s = s * p.scale;
  } else {
    for (var tq = t; tq < p.T; tq++) { s += att[(bh * p.T + tq) * p.T + t] * dout[(b * p.T + tq) * p.C + c]; }
  }
  dqkv[i] = dqkv[i] + s;`
}
