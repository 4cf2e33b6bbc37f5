// A float64 reference of the llama model (transformers' Llama semantics: RMSNorm, rotate-half RoPE,
// grouped-query attention by repeat_kv, SwiGLU, untied head) and the checks the model tests make with
// it: the backend's loss and gradients against it and its central differences, and two models'
// losses and gradients against each other.
import assert from 'node:assert/strict'
import type { ModelConfig } from '../core/model/config.ts'
import type { GptModel } from '../core/model/gpt.ts'

export type RefParams = ReadonlyMap<string, Float64Array>

/** A fixed batch: tokens and targets [B*T] over a vocabulary of V. */
export function refBatch (V: number, B: number, T: number): { tokens: Int32Array, targets: Int32Array } {
  const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 7 + 3) % V)
  const targets = Int32Array.from({ length: B * T }, (_, i) => (i * 5 + 1) % V)
  return { tokens, targets }
}

/** Mean cross-entropy of a llama model over tokens [B, T], in float64; query head h reads K/V head h / (NH / NKV). */
export function llamaRefLoss (c: ModelConfig, p: RefParams, tokens: Int32Array, targets: Int32Array, B: number, T: number): number {
  const C = c.dModel
  const NH = c.nHead
  const NKV = c.nKvHead ?? NH
  const hd = C / NH
  const Ckv = NKV * hd
  const H = c.ffnHidden as number
  const eps = c.normEps as number
  const theta = c.ropeTheta as number
  const g = (n: string): Float64Array => p.get(n) as Float64Array
  const rms = (x: Float64Array, w: Float64Array): Float64Array => {
    let ss = 0
    for (let i = 0; i < x.length; i++) ss += x[i] * x[i]
    const r = 1 / Math.sqrt(ss / x.length + eps)
    return x.map((v, i) => v * r * w[i])
  }
  const mm = (x: Float64Array, w: Float64Array, out: number): Float64Array => {
    const y = new Float64Array(out)
    for (let o = 0; o < out; o++) for (let i = 0; i < x.length; i++) y[o] += x[i] * w[o * x.length + i]
    return y
  }
  const rotate = (v: Float64Array, heads: number, off: number, t: number): void => { // rotate_half pairs (i, i + hd/2)
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < hd / 2; i++) {
        const a = t * theta ** (-2 * i / hd)
        const j = off + h * hd + i
        const x1 = v[j]; const x2 = v[j + hd / 2]
        v[j] = x1 * Math.cos(a) - x2 * Math.sin(a)
        v[j + hd / 2] = x1 * Math.sin(a) + x2 * Math.cos(a)
      }
    }
  }
  let loss = 0
  for (let b = 0; b < B; b++) {
    let xs: Float64Array[] = []
    for (let t = 0; t < T; t++) xs.push(g('embed_tokens.weight').slice(tokens[b * T + t] * C, (tokens[b * T + t] + 1) * C))
    for (let l = 0; l < c.nLayer; l++) {
      const n = `layers.${l}`
      // q [C], k [Ckv], v [Ckv] per position
      const qkv = xs.map((x, t) => {
        const v = mm(rms(x, g(`${n}.input_layernorm.weight`)), g(`${n}.self_attn.qkv_proj.weight`), C + 2 * Ckv)
        rotate(v, NH, 0, t)
        rotate(v, NKV, C, t)
        return v
      })
      xs = xs.map((x, t) => {
        const y = new Float64Array(C)
        for (let h = 0; h < NH; h++) {
          const kv = Math.floor(h / (NH / NKV))
          const s = Array.from({ length: t + 1 }, (_, u) => {
            let d = 0
            for (let i = 0; i < hd; i++) d += qkv[t][h * hd + i] * qkv[u][C + kv * hd + i]
            return d / Math.sqrt(hd)
          })
          const m = Math.max(...s)
          const e = s.map(v => Math.exp(v - m))
          const z = e.reduce((a, v) => a + v, 0)
          for (let u = 0; u <= t; u++) for (let i = 0; i < hd; i++) y[h * hd + i] += e[u] / z * qkv[u][C + Ckv + kv * hd + i]
        }
        const o = mm(y, g(`${n}.self_attn.o_proj.weight`), C)
        const r2 = x.map((v, i) => v + o[i])
        const gu = mm(rms(r2, g(`${n}.post_attention_layernorm.weight`)), g(`${n}.mlp.gate_up_proj.weight`), 2 * H)
        const hid = new Float64Array(H).map((_, i) => gu[i] / (1 + Math.exp(-gu[i])) * gu[H + i])
        const down = mm(hid, g(`${n}.mlp.down_proj.weight`), C)
        return r2.map((v, i) => v + down[i])
      })
    }
    for (let t = 0; t < T; t++) {
      const logits = mm(rms(xs[t], g('norm.weight')), g('lm_head.weight'), c.vocabSize)
      const m = Math.max(...logits)
      const lse = m + Math.log(logits.reduce((a, v) => a + Math.exp(v - m), 0))
      loss += lse - logits[targets[b * T + t]]
    }
  }
  return loss / (B * T)
}

/** Loads the model's parameters scaled up (norm weights near 1) so attention and the norms are far from trivial; returns them. */
export async function loudParams (model: GptModel): Promise<Map<string, Float32Array>> {
  const params = new Map<string, Float32Array>()
  for (const [k, v] of await model.downloadParams()) {
    params.set(k, /norm\.weight$/.test(k) ? v.map((_, i) => 1 + 0.1 * Math.sin(i + 1)) : v.map(x => x * 15))
  }
  await model.loadParams(params)
  return params
}

/**
 * Checks each gradient of `grads` at `indices(name, w)` against central differences of `loss` over `p64`
 * (changed in place and restored); every parameter must have a nonzero gradient. Returns how many were checked.
 */
export function checkCentralDifferences (p64: Map<string, Float64Array>, grads: ReadonlyMap<string, Float32Array>,
  loss: () => number, indices: (name: string, w: Float64Array) => number[]): number {
  let checked = 0
  for (const [name, w] of p64) {
    const g = grads.get(name) as Float32Array
    let gmax = 0
    for (const x of g) gmax = Math.max(gmax, Math.abs(x))
    assert.ok(gmax > 0, `${name} has a gradient`)
    for (const i of indices(name, w)) {
      const h = 1e-5
      const old = w[i]
      w[i] = old + h; const up = loss()
      w[i] = old - h; const dn = loss()
      w[i] = old
      const fd = (up - dn) / (2 * h)
      assert.ok(Math.abs(fd - g[i]) < 2e-3 * gmax + 1e-6, `${name}[${i}]: backend ${g[i]} vs finite difference ${fd} (max |g| ${gmax})`)
      checked++
    }
  }
  return checked
}

/** Four spread indices of a parameter. */
export const spreadIndices = (_name: string, w: Float64Array): number[] => [0, 1, 2, 3].map(n => (n * 7919 + 13) % w.length)

/** Each model's loss and gradients on one batch (zeroed first). */
export async function lossesAndGrads (models: GptModel[], tokens: Int32Array, targets: Int32Array, B: number, T: number):
Promise<{ losses: number[], grads: Array<Map<string, Float32Array>> }> {
  const losses: number[] = []
  const grads: Array<Map<string, Float32Array>> = []
  for (const m of models) {
    await m.zeroGrad()
    losses.push(await m.forward(tokens, B, T, targets) as number)
    await m.backward()
    grads.push(await m.downloadGrads())
  }
  return { losses, grads }
}

/** Two gradient sets agree within `tol` everywhere. */
export function assertSameGrads (a: ReadonlyMap<string, Float32Array>, b: ReadonlyMap<string, Float32Array>, tol: number): void {
  for (const [k, g] of a) {
    const h = b.get(k) as Float32Array
    for (let i = 0; i < g.length; i++) assert.ok(Math.abs(g[i] - h[i]) < tol, `${k}[${i}]: ${g[i]} vs ${h[i]}`)
  }
}
