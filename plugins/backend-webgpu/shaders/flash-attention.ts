// Flash attention (no [B,NH,T,T] buffers): barrier-free kernels with one thread per row, each
// holding a head-size accumulator in private memory (so hs <= FLASH_MAX_HS). qkv [B,T,3C], out
// [B,T,C], lse [B,NH,T], hs = C/NH, scale = 1/sqrt(hs); row i = (b*NH + h)*T + t.
//   forward: an online softmax over keys t2 <= t (running max m, sum l, accumulator rescaled by
//            exp(m_old - m_new)); out = acc / l, lse = m + log(l).
//   backward: p = exp(q.k scale - lse), ds = p (dout.v - dout.out); one kernel per query row for
//            dq (+= scale sum ds k), one per key row for dk (+= scale sum ds q) and dv (+= sum p dout),
//            so no two threads write one element and nothing needs atomics.
import { LINEAR, WG1, ro, rw } from './kernel.ts'
import type { KernelDef } from './kernel.ts'

/** Largest head size the private accumulators hold. */
export const FLASH_MAX_HS = 256

const P = [['n', 'u32'], ['T', 'u32'], ['C', 'u32'], ['NH', 'u32'], ['hs', 'u32'], ['scale', 'f32']] as const
const WG = [WG1, 1] as const

const ROW_INDEX = `let t = i % p.T;
  let bh = i / p.T;
  let b = bh / p.NH;
  let h = bh % p.NH;
  let C3 = 3u * p.C;`

const DOT = `fn dot_rows(a: u32, b: u32, n: u32) -> f32 {
  var s = 0.0;
  for (var e = 0u; e < n; e++) { s += qkv[a + e] * qkv[b + e]; }
  return s;
}`

/** out, lse from qkv (n = B*NH*T rows). */
export const flashForward: KernelDef = {
  key: 'flash_fwd',
  params: P,
  bindings: [rw('out'), rw('lse'), ro('qkv')],
  workgroup: WG,
  helpers: DOT,
  body: `${LINEAR} if (i >= p.n) { return; }
  ${ROW_INDEX}
  var acc: array<f32, ${FLASH_MAX_HS}>;
  let q = (b * p.T + t) * C3 + h * p.hs;
  var m = 0.0;
  var l = 0.0;
  for (var t2 = 0u; t2 <= t; t2++) {
    let k = (b * p.T + t2) * C3 + p.C + h * p.hs;
    let s = dot_rows(q, k, p.hs) * p.scale;
    var mn = s;
    var alpha = 0.0;
    if (t2 > 0u) { mn = max(m, s); alpha = exp(m - mn); }
    let e1 = exp(s - mn);
    l = l * alpha + e1;
    for (var e = 0u; e < p.hs; e++) { acc[e] = acc[e] * alpha + e1 * qkv[k + p.C + e]; }
    m = mn;
  }
  let o = (b * p.T + t) * p.C + h * p.hs;
  let inv = 1.0 / l;
  for (var e = 0u; e < p.hs; e++) { out[o + e] = acc[e] * inv; }
  lse[i] = m + log(l);`
}

const BWD_BINDINGS = [rw('dqkv'), ro('qkv'), ro('dout'), ro('out'), ro('lse')]

/** dq of query row i (n = B*NH*T rows): dqkv[q part] += scale * sum over t2 <= t of ds k. */
export const flashBackwardQ: KernelDef = {
  key: 'flash_bwd_q',
  params: P,
  bindings: BWD_BINDINGS,
  workgroup: WG,
  helpers: DOT,
  body: `${LINEAR} if (i >= p.n) { return; }
  ${ROW_INDEX}
  var acc: array<f32, ${FLASH_MAX_HS}>;
  let q = (b * p.T + t) * C3 + h * p.hs;
  let o = (b * p.T + t) * p.C + h * p.hs;
  var D = 0.0;
  for (var e = 0u; e < p.hs; e++) { D += dout[o + e] * out[o + e]; }
  let L = lse[i];
  for (var t2 = 0u; t2 <= t; t2++) {
    let k = (b * p.T + t2) * C3 + p.C + h * p.hs;
    let pr = exp(dot_rows(q, k, p.hs) * p.scale - L);
    var dp = 0.0;
    for (var e = 0u; e < p.hs; e++) { dp += dout[o + e] * qkv[k + p.C + e]; }
    let ds = pr * (dp - D);
    for (var e = 0u; e < p.hs; e++) { acc[e] += ds * qkv[k + e]; }
  }
  for (var e = 0u; e < p.hs; e++) { dqkv[q + e] = dqkv[q + e] + p.scale * acc[e]; }`
}

/** dk, dv of key row i (n = B*NH*T rows): sums over the query rows tq >= t that see it. */
export const flashBackwardKV: KernelDef = {
  key: 'flash_bwd_kv',
  params: P,
  bindings: BWD_BINDINGS,
  workgroup: WG,
  helpers: DOT,
  body: `${LINEAR} if (i >= p.n) { return; }
  ${ROW_INDEX}
  var ak: array<f32, ${FLASH_MAX_HS}>;
  var av: array<f32, ${FLASH_MAX_HS}>;
  let k = (b * p.T + t) * C3 + p.C + h * p.hs;
  for (var tq = t; tq < p.T; tq++) {
    let q = (b * p.T + tq) * C3 + h * p.hs;
    let o = (b * p.T + tq) * p.C + h * p.hs;
    let pr = exp(dot_rows(q, k, p.hs) * p.scale - lse[bh * p.T + tq]);
    var dp = 0.0;
    var D = 0.0;
    for (var e = 0u; e < p.hs; e++) { dp += dout[o + e] * qkv[k + p.C + e]; D += dout[o + e] * out[o + e]; }
    let ds = pr * (dp - D);
    for (var e = 0u; e < p.hs; e++) { ak[e] += ds * qkv[q + e]; av[e] += pr * dout[o + e]; }
  }
  for (var e = 0u; e < p.hs; e++) {
    dqkv[k + e] = dqkv[k + e] + p.scale * ak[e];
    dqkv[k + p.C + e] = dqkv[k + p.C + e] + av[e];
  }`
}
