// Plain TypeScript kernels of a GPT-2 training step, llm.c (train_gpt2.c) semantics, on typed-array
// views. One function per layer forward and backward. Shapes: B batch, T time, C channels, NH heads,
// hs = C/NH head size, V vocab, N = B*T rows, OC output channels.
//
// These run on worker threads (see worker.ts) over views of shared memory; the matmuls and attention
// have faster WASM SIMD versions (wasm.ts) that the compliance suite checks against the same references.
// No shape checks here: the backend validates before dispatching. Backward kernels ACCUMULATE (+=)
// into dinp and parameter gradients; attention's datt/dpreatt are scratch and are overwritten.

type F32 = Float32Array
type I32 = Int32Array

// ---- utilities --------------------------------------------------------------------------------

export function fill (t: F32 | I32, value: number): void { t.fill(value) }

export function copy (dst: F32 | I32, src: F32 | I32): void { dst.set(src) }

export function scale (t: F32, s: number): void {
  for (let i = 0; i < t.length; i++) t[i] *= s
}

/** dst += alpha * src */
export function accumulate (dst: F32, src: F32, alpha: number): void {
  if (alpha === 1) {
    for (let i = 0; i < dst.length; i++) dst[i] += src[i]
  } else {
    for (let i = 0; i < dst.length; i++) dst[i] += alpha * src[i]
  }
}

/** Sum of squares in float64 (non-finite input gives a non-finite result). */
export function sumSquares (t: F32): number {
  let s = 0
  for (let i = 0; i < t.length; i++) s += t[i] * t[i]
  return s
}

// ---- encoder ----------------------------------------------------------------------------------

/** out[B,T,C] = wte[inp[b,t],:] + wpe[t,:], rows [r0, r1) of the N = B*T rows. */
export function encoderForward (out: F32, inp: I32, wte: F32, wpe: F32, T: number, C: number, r0: number, r1: number): void {
  for (let n = r0; n < r1; n++) {
    const o = n * C
    const w = inp[n] * C
    const p = (n % T) * C
    for (let i = 0; i < C; i++) out[o + i] = wte[w + i] + wpe[p + i]
  }
}

/** Channels [c0, c1) of dwte/dwpe (split by channel so threads never add into the same element). */
export function encoderBackward (dwte: F32, dwpe: F32, dout: F32, inp: I32, B: number, T: number, C: number, c0: number, c1: number): void {
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const o = (b * T + t) * C
      const w = inp[b * T + t] * C
      const p = t * C
      for (let i = c0; i < c1; i++) {
        const d = dout[o + i]
        dwte[w + i] += d
        dwpe[p + i] += d
      }
    }
  }
}

// ---- layernorm --------------------------------------------------------------------------------

/** Rows [r0, r1) of inp [N,C]; mean, rstd [N]. eps 1e-5. */
export function layernormForward (out: F32, mean: F32, rstd: F32, inp: F32, weight: F32, bias: F32, C: number, r0: number, r1: number): void {
  for (let n = r0; n < r1; n++) {
    const x = n * C
    let m = 0
    for (let i = 0; i < C; i++) m += inp[x + i]
    m /= C
    let v = 0
    for (let i = 0; i < C; i++) { const d = inp[x + i] - m; v += d * d }
    v /= C
    const s = 1 / Math.sqrt(v + 1e-5)
    for (let i = 0; i < C; i++) out[x + i] = (s * (inp[x + i] - m)) * weight[i] + bias[i]
    mean[n] = m
    rstd[n] = s
  }
}

/** dinp rows [r0, r1): dinp += (dnorm - mean(dnorm) - norm * mean(dnorm * norm)) * rstd, dnorm = weight * dout. */
export function layernormBackwardInput (dinp: F32, dout: F32, inp: F32, weight: F32, mean: F32, rstd: F32, C: number, r0: number, r1: number): void {
  for (let n = r0; n < r1; n++) {
    const x = n * C
    const m = mean[n]
    const s = rstd[n]
    let dnormMean = 0
    let dnormNormMean = 0
    for (let i = 0; i < C; i++) {
      const dnorm = weight[i] * dout[x + i]
      dnormMean += dnorm
      dnormNormMean += dnorm * (inp[x + i] - m) * s
    }
    dnormMean /= C
    dnormNormMean /= C
    for (let i = 0; i < C; i++) {
      const norm = (inp[x + i] - m) * s
      dinp[x + i] += (weight[i] * dout[x + i] - dnormMean - norm * dnormNormMean) * s
    }
  }
}

/** Channels [c0, c1) of dweight += sum_n norm * dout, dbias += sum_n dout (split by channel: no races). */
export function layernormBackwardParams (dweight: F32, dbias: F32, dout: F32, inp: F32, mean: F32, rstd: F32, N: number, C: number, c0: number, c1: number): void {
  for (let n = 0; n < N; n++) {
    const x = n * C
    const m = mean[n]
    const s = rstd[n]
    for (let i = c0; i < c1; i++) {
      const d = dout[x + i]
      dbias[i] += d
      dweight[i] += (inp[x + i] - m) * s * d
    }
  }
}

// ---- matmul -----------------------------------------------------------------------------------

/** Rows [r0, r1): out[N,OC] = inp[N,C] @ weight[OC,C]^T + bias[OC] */
export function matmulForward (out: F32, inp: F32, weight: F32, bias: F32 | null, C: number, OC: number, r0: number, r1: number): void {
  for (let n = r0; n < r1; n++) {
    const x = n * C
    const y = n * OC
    for (let o = 0; o < OC; o++) {
      const w = o * C
      let s = bias !== null ? bias[o] : 0
      for (let i = 0; i < C; i++) s += inp[x + i] * weight[w + i]
      out[y + o] = s
    }
  }
}

/** dinp rows [r0, r1): dinp[N,C] += dout[N,OC] @ weight[OC,C] */
export function matmulBackwardInput (dinp: F32, dout: F32, weight: F32, C: number, OC: number, r0: number, r1: number): void {
  for (let n = r0; n < r1; n++) {
    const x = n * C
    const y = n * OC
    for (let o = 0; o < OC; o++) {
      const d = dout[y + o]
      const w = o * C
      for (let i = 0; i < C; i++) dinp[x + i] += d * weight[w + i]
    }
  }
}

/** dweight rows [o0, o1): dweight[OC,C] += dout[N,OC]^T @ inp[N,C]; dbias[OC] += sum_n dout[n,:] */
export function matmulBackwardWeight (dweight: F32, dbias: F32 | null, dout: F32, inp: F32, N: number, C: number, OC: number, o0: number, o1: number): void {
  for (let o = o0; o < o1; o++) {
    const w = o * C
    let sb = 0
    for (let n = 0; n < N; n++) {
      const d = dout[n * OC + o]
      const x = n * C
      sb += d
      for (let i = 0; i < C; i++) dweight[w + i] += d * inp[x + i]
    }
    if (dbias !== null) dbias[o] += sb
  }
}

// ---- attention --------------------------------------------------------------------------------

/**
 * Causal self-attention for the (b, h) pairs [p0, p1) of B*NH. qkv [B,T,3C]; out [B,T,C];
 * preatt, att [B,NH,T,T]. Masked entries (t2 > t): att 0, preatt 0.
 */
export function attentionForward (out: F32, preatt: F32, att: F32, qkv: F32, B: number, T: number, C: number, NH: number, p0: number, p1: number): void {
  const hs = C / NH
  const C3 = 3 * C
  const sc = 1 / Math.sqrt(hs)
  for (let p = p0; p < p1; p++) {
    const b = Math.floor(p / NH)
    const h = p % NH
    for (let t = 0; t < T; t++) {
      const q = (b * T + t) * C3 + h * hs
      const row = (p * T + t) * T
      // pass 1: q . k, running max
      let maxval = -Infinity
      for (let t2 = 0; t2 <= t; t2++) {
        const k = (b * T + t2) * C3 + h * hs + C
        let s = 0
        for (let i = 0; i < hs; i++) s += qkv[q + i] * qkv[k + i]
        s *= sc
        if (s > maxval) maxval = s
        preatt[row + t2] = s
      }
      // pass 2, 3: exp and normalize
      let sum = 0
      for (let t2 = 0; t2 <= t; t2++) {
        const e = Math.exp(preatt[row + t2] - maxval)
        att[row + t2] = e
        sum += e
      }
      const inv = sum === 0 ? 0 : 1 / sum
      for (let t2 = 0; t2 <= t; t2++) att[row + t2] *= inv
      for (let t2 = t + 1; t2 < T; t2++) { att[row + t2] = 0; preatt[row + t2] = 0 }
      // pass 4: weighted sum of values
      const o = (b * T + t) * C + h * hs
      for (let i = 0; i < hs; i++) out[o + i] = 0
      for (let t2 = 0; t2 <= t; t2++) {
        const v = (b * T + t2) * C3 + h * hs + 2 * C
        const a = att[row + t2]
        for (let i = 0; i < hs; i++) out[o + i] += a * qkv[v + i]
      }
    }
  }
}

/**
 * Backward for (b, h) pairs [p0, p1). dqkv accumulates; datt and dpreatt rows are overwritten.
 * Softmax backward in O(T): dpreatt[t3] = att[t3] * (datt[t3] - sum_t2 att[t2] datt[t2]).
 */
export function attentionBackward (dqkv: F32, dpreatt: F32, datt: F32, dout: F32, qkv: F32, att: F32, B: number, T: number, C: number, NH: number, p0: number, p1: number): void {
  const hs = C / NH
  const C3 = 3 * C
  const sc = 1 / Math.sqrt(hs)
  for (let p = p0; p < p1; p++) {
    const b = Math.floor(p / NH)
    const h = p % NH
    for (let t = 0; t < T; t++) {
      const row = (p * T + t) * T
      const o = (b * T + t) * C + h * hs
      const q = (b * T + t) * C3 + h * hs
      // pass 4 backward: datt = dout . v ; dv += att * dout
      let dot = 0
      for (let t2 = 0; t2 <= t; t2++) {
        const v = (b * T + t2) * C3 + h * hs + 2 * C
        const a = att[row + t2]
        let s = 0
        for (let i = 0; i < hs; i++) {
          s += qkv[v + i] * dout[o + i]
          dqkv[v + i] += a * dout[o + i]
        }
        datt[row + t2] = s
        dot += a * s
      }
      // softmax backward
      for (let t2 = 0; t2 <= t; t2++) dpreatt[row + t2] = att[row + t2] * (datt[row + t2] - dot)
      for (let t2 = t + 1; t2 < T; t2++) { datt[row + t2] = 0; dpreatt[row + t2] = 0 }
      // q . k backward
      for (let t2 = 0; t2 <= t; t2++) {
        const k = (b * T + t2) * C3 + h * hs + C
        const d = dpreatt[row + t2] * sc
        for (let i = 0; i < hs; i++) {
          dqkv[q + i] += qkv[k + i] * d
          dqkv[k + i] += qkv[q + i] * d
        }
      }
    }
  }
}

// ---- GELU, residual -----------------------------------------------------------------------------

const GELU_SCALE = Math.sqrt(2 / Math.PI)

export function geluForward (out: F32, inp: F32, i0: number, i1: number): void {
  for (let i = i0; i < i1; i++) {
    const x = inp[i]
    const cube = 0.044715 * x * x * x
    out[i] = 0.5 * x * (1 + Math.tanh(GELU_SCALE * (x + cube)))
  }
}

export function geluBackward (dinp: F32, inp: F32, dout: F32, i0: number, i1: number): void {
  for (let i = i0; i < i1; i++) {
    const x = inp[i]
    const cube = 0.044715 * x * x * x
    const th = Math.tanh(GELU_SCALE * (x + cube))
    const sech2 = 1 - th * th // 1/cosh^2, without cosh's overflow
    const g = 0.5 * (1 + th) + x * 0.5 * sech2 * GELU_SCALE * (1 + 3 * 0.044715 * x * x)
    dinp[i] += g * dout[i]
  }
}

export function residualForward (out: F32, a: F32, b: F32, i0: number, i1: number): void {
  for (let i = i0; i < i1; i++) out[i] = a[i] + b[i]
}

// ---- softmax + cross-entropy ------------------------------------------------------------------

/** Rows [r0, r1). logits, probs [N,V]; targets, losses [N]. Targets < 0: loss 0. */
export function crossEntropyForward (losses: F32, probs: F32, logits: F32, targets: I32, V: number, r0: number, r1: number): void {
  for (let n = r0; n < r1; n++) {
    const x = n * V
    let maxval = -Infinity
    for (let i = 0; i < V; i++) if (logits[x + i] > maxval) maxval = logits[x + i]
    let sum = 0
    for (let i = 0; i < V; i++) {
      const e = Math.exp(logits[x + i] - maxval)
      probs[x + i] = e
      sum += e
    }
    const inv = 1 / sum
    for (let i = 0; i < V; i++) probs[x + i] *= inv
    const tgt = targets[n]
    losses[n] = tgt < 0 ? 0 : -Math.log(probs[x + tgt])
  }
}

/** dlogits[n,:] += (probs[n,:] - onehot(target)) * dlossScale, rows with target < 0 skipped. */
export function crossEntropyBackward (dlogits: F32, probs: F32, targets: I32, dlossScale: number, V: number, r0: number, r1: number): void {
  for (let n = r0; n < r1; n++) {
    const tgt = targets[n]
    if (tgt < 0) continue
    const x = n * V
    for (let i = 0; i < V; i++) dlogits[x + i] += (probs[x + i] - (i === tgt ? 1 : 0)) * dlossScale
  }
}

// ---- AdamW ------------------------------------------------------------------------------------

export interface AdamWScalars {
  lr: number
  beta1: number
  beta2: number
  eps: number
  weightDecay: number
  step: number
  gradScale: number
}

/** Elements [i0, i1). llm.c's AdamW: p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p). */
export function adamwUpdate (params: F32, grads: F32, m: F32, v: F32, hp: AdamWScalars, i0: number, i1: number): void {
  const { lr, beta1, beta2, eps, weightDecay, step, gradScale } = hp
  const bc1 = 1 - Math.pow(beta1, step)
  const bc2 = 1 - Math.pow(beta2, step)
  for (let i = i0; i < i1; i++) {
    const g = grads[i] * gradScale
    const mi = beta1 * m[i] + (1 - beta1) * g
    const vi = beta2 * v[i] + (1 - beta2) * g * g
    m[i] = mi
    v[i] = vi
    const mhat = mi / bc1
    const vhat = vi / bc2
    params[i] -= lr * (mhat / (Math.sqrt(vhat) + eps) + weightDecay * params[i])
  }
}
