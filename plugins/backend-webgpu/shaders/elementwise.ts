// Elementwise kernels, one thread per element, no barriers: fill, scale, accumulate, residual add,
// GELU forward/backward (tanh approximation), AdamW, cross-entropy backward, encoder forward.
// Shapes in comments: N = B*T rows, C channels, V vocabulary.
import { LINEAR, WG1, ro, rw } from './kernel.ts'
import type { KernelDef } from './kernel.ts'

const WG = [WG1, 1] as const

/** t[i] = bits (f32 or i32 tensors, written as raw 32-bit words). */
export const fill: KernelDef = {
  key: 'fill',
  params: [['n', 'u32'], ['bits', 'u32']],
  bindings: [rw('t', 'u32')],
  workgroup: WG,
  body: `${LINEAR} if (i >= p.n) { return; }
  t[i] = p.bits;`
}

/** t[i] *= s */
export const scale: KernelDef = {
  key: 'scale',
  params: [['n', 'u32'], ['s', 'f32']],
  bindings: [rw('t')],
  workgroup: WG,
  body: `${LINEAR} if (i >= p.n) { return; }
  t[i] = t[i] * p.s;`
}

/** dst[i] += alpha * src[i] */
export const accumulate: KernelDef = {
  key: 'accumulate',
  params: [['n', 'u32'], ['alpha', 'f32']],
  bindings: [rw('dst'), ro('src')],
  workgroup: WG,
  body: `${LINEAR} if (i >= p.n) { return; }
  dst[i] = dst[i] + p.alpha * src[i];`
}

/** out[i] = a[i] + b[i] */
export const residual: KernelDef = {
  key: 'residual',
  params: [['n', 'u32']],
  bindings: [rw('out'), ro('a'), ro('b')],
  workgroup: WG,
  body: `${LINEAR} if (i >= p.n) { return; }
  out[i] = a[i] + b[i];`
}

// tanh through exp(-2|a|): exact to f32 rounding for every |a| (a built-in tanh may return NaN for
// large arguments on some drivers), and sech^2 = 4e/(1+e)^2 without the cancellation of 1 - tanh^2.
const GELU_HELPERS = `
const GELU_S: f32 = 0.7978845608028654; // sqrt(2/pi)
const GELU_K: f32 = 0.044715;
fn gelu_arg(x: f32) -> f32 { return GELU_S * (x + GELU_K * x * x * x); }
fn tanh_e(a: f32, e: f32) -> f32 { return sign(a) * (1.0 - e) / (1.0 + e); }
`

/** out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
export const geluForward: KernelDef = {
  key: 'gelu_fwd',
  params: [['n', 'u32']],
  bindings: [rw('out'), ro('inp')],
  workgroup: WG,
  helpers: GELU_HELPERS,
  body: `${LINEAR} if (i >= p.n) { return; }
  let x = inp[i];
  let a = gelu_arg(x);
  let e = exp(-2.0 * abs(a));
  out[i] = 0.5 * x * (1.0 + tanh_e(a, e));`
}

/** dinp += gelu'(x) * dout */
export const geluBackward: KernelDef = {
  key: 'gelu_bwd',
  params: [['n', 'u32']],
  bindings: [rw('dinp'), ro('inp'), ro('dout')],
  workgroup: WG,
  helpers: GELU_HELPERS,
  body: `${LINEAR} if (i >= p.n) { return; }
  let x = inp[i];
  let a = gelu_arg(x);
  let e = exp(-2.0 * abs(a));
  let sech2 = 4.0 * e / ((1.0 + e) * (1.0 + e));
  let g = 0.5 * (1.0 + tanh_e(a, e)) + x * 0.5 * sech2 * GELU_S * (1.0 + 3.0 * GELU_K * x * x);
  dinp[i] = dinp[i] + g * dout[i];`
}

/**
 * AdamW in place. bc1 = 1 - beta1^step, bc2 = 1 - beta2^step (computed on the host in float64).
 * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr (mhat / (sqrt(vhat) + eps) + wd p), g = grad * gradScale.
 */
export const adamw: KernelDef = {
  key: 'adamw',
  params: [['n', 'u32'], ['lr', 'f32'], ['b1', 'f32'], ['b2', 'f32'], ['eps', 'f32'], ['wd', 'f32'], ['bc1', 'f32'], ['bc2', 'f32'], ['gs', 'f32'], ['omb1', 'f32'], ['omb2', 'f32']],
  bindings: [rw('params'), ro('grads'), rw('m'), rw('v')],
  workgroup: WG,
  body: `${LINEAR} if (i >= p.n) { return; }
  let g = grads[i] * p.gs;
  let mi = p.b1 * m[i] + p.omb1 * g;
  let vi = p.b2 * v[i] + p.omb2 * g * g;
  m[i] = mi;
  v[i] = vi;
  let mhat = mi / p.bc1;
  let vhat = vi / p.bc2;
  let w = params[i];
  params[i] = w - p.lr * (mhat / (sqrt(vhat) + p.eps) + p.wd * w);`
}

/** dlogits[n,v] += (probs[n,v] - [v == target[n]]) * scale; rows with target < 0 untouched. */
export const crossEntropyBackward: KernelDef = {
  key: 'ce_bwd',
  params: [['n', 'u32'], ['V', 'u32'], ['scale', 'f32']],
  bindings: [rw('dlogits'), ro('probs'), ro('targets', 'i32')],
  workgroup: WG,
  body: `${LINEAR} if (i >= p.n) { return; }
  let row = i / p.V;
  let t = targets[row];
  if (t < 0) { return; }
  let col = i - row * p.V;
  let hot = select(0.0, 1.0, i32(col) == t);
  dlogits[i] = dlogits[i] + (probs[i] - hot) * p.scale;`
}

/** out[b,t,c] = wte[inp[b,t], c] + wpe[t, c]   (n = B*T*C; ids are range-checked on the host). */
export const encoderForward: KernelDef = {
  key: 'encoder_fwd',
  params: [['n', 'u32'], ['T', 'u32'], ['C', 'u32']],
  bindings: [rw('out'), ro('ids', 'i32'), ro('wte'), ro('wpe')],
  workgroup: WG,
  body: `${LINEAR} if (i >= p.n) { return; }
  let bt = i / p.C;
  let c = i - bt * p.C;
  let t = bt % p.T;
  out[i] = wte[u32(ids[bt]) * p.C + c] + wpe[t * p.C + c];`
}

/**
 * dwte[id, c] += sum over the positions holding token id of dout[pos, c]  (n = U*C).
 * csr (i32, built on the host from the token ids): [ids of the U distinct tokens | U+1 offsets |
 * positions grouped by token, ascending]; a fixed summation order, so results are deterministic.
 */
export const encoderBackwardWte: KernelDef = {
  key: 'encoder_bwd_wte',
  params: [['n', 'u32'], ['C', 'u32'], ['U', 'u32']],
  bindings: [rw('dwte'), ro('dout'), ro('csr', 'i32')],
  workgroup: WG,
  body: `${LINEAR} if (i >= p.n) { return; }
  let u = i / p.C;
  let c = i - u * p.C;
  let id = u32(csr[u]);
  let k0 = u32(csr[p.U + u]);
  let k1 = u32(csr[p.U + u + 1u]);
  let base = 2u * p.U + 1u;
  var s = 0.0;
  for (var k = k0; k < k1; k++) { s += dout[u32(csr[base + k]) * p.C + c]; }
  dwte[id * p.C + c] = dwte[id * p.C + c] + s;`
}
