// Backend compliance, the references themselves: each float64 reference backward (reference.ts)
// against finite differences of its forward, so a backend is never checked against a wrong
// reference. Needs no backend. Registered by backendCompliance (compliance.ts).
import type { SuiteContext } from './compliance-context.ts'
import * as R from './reference.ts'
import { assertClose, f64, numericGrad, randF32, randInts, rng } from './gradcheck.ts'

export function referenceTests (ctx: SuiteContext): void {
  const { seed } = ctx

  describe('float64 reference backward vs finite differences', function () {
    const close = (a: Float64Array, b: Float64Array, what: string): void => { assertClose(a, b, 1e-6, what) }

    it('matmul', function () {
      const r = rng(seed + 51)
      const N = 3; const C = 5; const OC = 4
      const x = f64(randF32(r, N * C)); const w = f64(randF32(r, OC * C)); const b = f64(randF32(r, OC)); const g = f64(randF32(r, N * OC))
      const ref = R.matmulBackward(g, x, w, N, C, OC)
      close(ref.dinp, numericGrad(xx => R.matmulForward(xx, w, b, N, C, OC), x, g), 'dinp')
      close(ref.dweight, numericGrad(ww => R.matmulForward(x, ww, b, N, C, OC), w, g), 'dweight')
      close(ref.dbias, numericGrad(bb => R.matmulForward(x, w, bb, N, C, OC), b, g), 'dbias')
    })

    it('layernorm', function () {
      const r = rng(seed + 53)
      const N = 3; const C = 7
      const x = f64(randF32(r, N * C, 2, 1)); const w = f64(randF32(r, C)); const b = f64(randF32(r, C)); const g = f64(randF32(r, N * C))
      const fwd = R.layernormForward(x, w, b, N, C)
      const ref = R.layernormBackward(g, x, w, fwd.mean, fwd.rstd, N, C)
      close(ref.dinp, numericGrad(xx => R.layernormForward(xx, w, b, N, C).out, x, g), 'dinp')
      close(ref.dweight, numericGrad(ww => R.layernormForward(x, ww, b, N, C).out, w, g), 'dweight')
      close(ref.dbias, numericGrad(bb => R.layernormForward(x, w, bb, N, C).out, b, g), 'dbias')
    })

    it('attention', function () {
      const r = rng(seed + 57)
      const B = 2; const T = 4; const C = 6; const NH = 2
      const qkv = f64(randF32(r, B * T * 3 * C)); const g = f64(randF32(r, B * T * C))
      const fwd = R.attentionForward(qkv, B, T, C, NH)
      close(R.attentionBackward(g, qkv, fwd.att, B, T, C, NH).dqkv, numericGrad(q => R.attentionForward(q, B, T, C, NH).out, qkv, g), 'dqkv')
    })

    it('encoder, gelu, cross-entropy', function () {
      const r = rng(seed + 59)
      const B = 2; const T = 3; const C = 4; const V = 5
      const ids = randInts(r, B * T, 0, V); const wte = f64(randF32(r, V * C)); const wpe = f64(randF32(r, T * C)); const g = f64(randF32(r, B * T * C))
      const eb = R.encoderBackward(g, ids, V, T, B, T, C)
      close(eb.dwte, numericGrad(w => R.encoderForward(ids, w, wpe, B, T, C), wte, g), 'dwte')
      close(eb.dwpe, numericGrad(w => R.encoderForward(ids, wte, w, B, T, C), wpe, g), 'dwpe')

      const x = f64(randF32(r, 50, 4)); const gg = f64(randF32(r, 50))
      close(R.geluBackward(x, gg), numericGrad(xx => R.geluForward(xx), x, gg), 'gelu')

      const N = 4; const logits = f64(randF32(r, N * V, 3)); const targets = Int32Array.from([1, -1, 4, 0])
      const scale = 1 / 3
      const probs = R.crossEntropyForward(logits, targets, N, V).probs
      const ones = new Float64Array(N).fill(scale)
      close(R.crossEntropyBackward(probs, targets, scale, N, V), numericGrad(l => R.crossEntropyForward(l, targets, N, V).losses, logits, ones), 'dlogits')
    })
  })
}
