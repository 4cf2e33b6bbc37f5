// Float64 reference kernels for the backend compliance suite. Written for clarity, independently of
// any backend: each returns fresh Float64Arrays (no accumulation), so a test checks
// `backend result = initial contents + reference`. Shapes: B, T, C, NH, hs = C/NH, V, N = B*T, OC.
// These follow llm.c's train_gpt2.c formulas literally (e.g. the O(T^2) softmax Jacobian, cosh in GELU).

export type F64 = Float64Array
type Ints = ArrayLike<number>

export function encoderForward (inp: Ints, wte: F64, wpe: F64, B: number, T: number, C: number): F64 {
  const out = new Float64Array(B * T * C)
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const ix = inp[b * T + t]
      for (let i = 0; i < C; i++) out[(b * T + t) * C + i] = wte[ix * C + i] + wpe[t * C + i]
    }
  }
  return out
}

export function encoderBackward (dout: F64, inp: Ints, V: number, maxT: number, B: number, T: number, C: number): { dwte: F64, dwpe: F64 } {
  const dwte = new Float64Array(V * C)
  const dwpe = new Float64Array(maxT * C)
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const ix = inp[b * T + t]
      for (let i = 0; i < C; i++) {
        dwte[ix * C + i] += dout[(b * T + t) * C + i]
        dwpe[t * C + i] += dout[(b * T + t) * C + i]
      }
    }
  }
  return { dwte, dwpe }
}

export function layernormForward (inp: F64, weight: F64, bias: F64, N: number, C: number): { out: F64, mean: F64, rstd: F64 } {
  const out = new Float64Array(N * C)
  const mean = new Float64Array(N)
  const rstd = new Float64Array(N)
  for (let n = 0; n < N; n++) {
    const row = inp.subarray(n * C, (n + 1) * C)
    const m = row.reduce((a, x) => a + x, 0) / C
    const v = row.reduce((a, x) => a + (x - m) ** 2, 0) / C
    const s = 1 / Math.sqrt(v + 1e-5)
    for (let i = 0; i < C; i++) out[n * C + i] = (row[i] - m) * s * weight[i] + bias[i]
    mean[n] = m
    rstd[n] = s
  }
  return { out, mean, rstd }
}

export function layernormBackward (dout: F64, inp: F64, weight: F64, mean: F64, rstd: F64, N: number, C: number): { dinp: F64, dweight: F64, dbias: F64 } {
  const dinp = new Float64Array(N * C)
  const dweight = new Float64Array(C)
  const dbias = new Float64Array(C)
  for (let n = 0; n < N; n++) {
    const norm = (i: number): number => (inp[n * C + i] - mean[n]) * rstd[n]
    let dnormMean = 0
    let dnormNormMean = 0
    for (let i = 0; i < C; i++) {
      const dnorm = weight[i] * dout[n * C + i]
      dnormMean += dnorm / C
      dnormNormMean += dnorm * norm(i) / C
    }
    for (let i = 0; i < C; i++) {
      const dnorm = weight[i] * dout[n * C + i]
      dbias[i] += dout[n * C + i]
      dweight[i] += norm(i) * dout[n * C + i]
      dinp[n * C + i] = (dnorm - dnormMean - norm(i) * dnormNormMean) * rstd[n]
    }
  }
  return { dinp, dweight, dbias }
}

export function matmulForward (inp: F64, weight: F64, bias: F64 | null, N: number, C: number, OC: number): F64 {
  const out = new Float64Array(N * OC)
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < OC; o++) {
      let s = bias === null ? 0 : bias[o]
      for (let i = 0; i < C; i++) s += inp[n * C + i] * weight[o * C + i]
      out[n * OC + o] = s
    }
  }
  return out
}

export function matmulBackward (dout: F64, inp: F64, weight: F64, N: number, C: number, OC: number): { dinp: F64, dweight: F64, dbias: F64 } {
  const dinp = new Float64Array(N * C)
  const dweight = new Float64Array(OC * C)
  const dbias = new Float64Array(OC)
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < OC; o++) {
      const d = dout[n * OC + o]
      dbias[o] += d
      for (let i = 0; i < C; i++) {
        dinp[n * C + i] += weight[o * C + i] * d
        dweight[o * C + i] += inp[n * C + i] * d
      }
    }
  }
  return { dinp, dweight, dbias }
}

/** Causal attention. Masked (t2 > t) preatt entries are left 0 here; backends may leave any value there. */
export function attentionForward (qkv: F64, B: number, T: number, C: number, NH: number): { out: F64, preatt: F64, att: F64 } {
  const hs = C / NH
  const scale = 1 / Math.sqrt(hs)
  const out = new Float64Array(B * T * C)
  const preatt = new Float64Array(B * NH * T * T)
  const att = new Float64Array(B * NH * T * T)
  const q = (b: number, t: number, h: number, i: number): number => qkv[(b * T + t) * 3 * C + h * hs + i]
  const k = (b: number, t: number, h: number, i: number): number => qkv[(b * T + t) * 3 * C + C + h * hs + i]
  const v = (b: number, t: number, h: number, i: number): number => qkv[(b * T + t) * 3 * C + 2 * C + h * hs + i]
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let t = 0; t < T; t++) {
        const row = ((b * NH + h) * T + t) * T
        let max = -Infinity
        for (let t2 = 0; t2 <= t; t2++) {
          let s = 0
          for (let i = 0; i < hs; i++) s += q(b, t, h, i) * k(b, t2, h, i)
          preatt[row + t2] = s * scale
          max = Math.max(max, s * scale)
        }
        let sum = 0
        for (let t2 = 0; t2 <= t; t2++) sum += Math.exp(preatt[row + t2] - max)
        for (let t2 = 0; t2 <= t; t2++) att[row + t2] = Math.exp(preatt[row + t2] - max) / sum
        for (let i = 0; i < hs; i++) {
          let s = 0
          for (let t2 = 0; t2 <= t; t2++) s += att[row + t2] * v(b, t2, h, i)
          out[(b * T + t) * C + h * hs + i] = s
        }
      }
    }
  }
  return { out, preatt, att }
}

/** Gradient of attention w.r.t. qkv, plus the datt/dpreatt scratch values (masked entries 0). */
export function attentionBackward (dout: F64, qkv: F64, att: F64, B: number, T: number, C: number, NH: number): { dqkv: F64, datt: F64, dpreatt: F64 } {
  const hs = C / NH
  const scale = 1 / Math.sqrt(hs)
  const dqkv = new Float64Array(B * T * 3 * C)
  const datt = new Float64Array(B * NH * T * T)
  const dpreatt = new Float64Array(B * NH * T * T)
  const qi = (b: number, t: number, h: number, i: number): number => (b * T + t) * 3 * C + h * hs + i
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let t = 0; t < T; t++) {
        const row = ((b * NH + h) * T + t) * T
        const o = (b * T + t) * C + h * hs
        for (let t2 = 0; t2 <= t; t2++) {
          for (let i = 0; i < hs; i++) {
            const vi = qi(b, t2, h, i) + 2 * C
            datt[row + t2] += qkv[vi] * dout[o + i]
            dqkv[vi] += att[row + t2] * dout[o + i]
          }
        }
        // softmax Jacobian, literally: d att[t2] / d preatt[t3] = att[t2] (1[t2=t3] - att[t3])
        for (let t2 = 0; t2 <= t; t2++) {
          for (let t3 = 0; t3 <= t; t3++) {
            dpreatt[row + t3] += att[row + t2] * ((t2 === t3 ? 1 : 0) - att[row + t3]) * datt[row + t2]
          }
        }
        for (let t2 = 0; t2 <= t; t2++) {
          for (let i = 0; i < hs; i++) {
            const q = qi(b, t, h, i)
            const k = qi(b, t2, h, i) + C
            dqkv[q] += qkv[k] * dpreatt[row + t2] * scale
            dqkv[k] += qkv[q] * dpreatt[row + t2] * scale
          }
        }
      }
    }
  }
  return { dqkv, datt, dpreatt }
}

const GELU_S = Math.sqrt(2 / Math.PI)

export function geluForward (inp: F64): F64 {
  return inp.map(x => 0.5 * x * (1 + Math.tanh(GELU_S * (x + 0.044715 * x ** 3))))
}

export function geluBackward (inp: F64, dout: F64): F64 {
  return inp.map((x, i) => {
    const arg = GELU_S * (x + 0.044715 * x ** 3)
    const sech = 1 / Math.cosh(arg)
    const g = 0.5 * (1 + Math.tanh(arg)) + x * 0.5 * sech * sech * GELU_S * (1 + 3 * 0.044715 * x * x)
    return g * dout[i]
  })
}

export function residualForward (a: F64, b: F64): F64 {
  return a.map((x, i) => x + b[i])
}

export function crossEntropyForward (logits: F64, targets: Ints, N: number, V: number): { losses: F64, probs: F64 } {
  const probs = new Float64Array(N * V)
  const losses = new Float64Array(N)
  for (let n = 0; n < N; n++) {
    const row = logits.subarray(n * V, (n + 1) * V)
    const max = row.reduce((a, x) => Math.max(a, x), -Infinity)
    const sum = row.reduce((a, x) => a + Math.exp(x - max), 0)
    for (let i = 0; i < V; i++) probs[n * V + i] = Math.exp(row[i] - max) / sum
    const t = targets[n]
    // log-softmax directly (not log of the rounded prob)
    losses[n] = t < 0 ? 0 : -(row[t] - max - Math.log(sum))
  }
  return { losses, probs }
}

export function crossEntropyBackward (probs: F64, targets: Ints, dlossScale: number, N: number, V: number): F64 {
  const dlogits = new Float64Array(N * V)
  for (let n = 0; n < N; n++) {
    if (targets[n] < 0) continue
    for (let i = 0; i < V; i++) dlogits[n * V + i] = (probs[n * V + i] - (i === targets[n] ? 1 : 0)) * dlossScale
  }
  return dlogits
}

export interface AdamWRef { lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: number, gradScale: number }

export function adamwUpdate (params: F64, grads: F64, m: F64, v: F64, hp: AdamWRef): { params: F64, m: F64, v: F64 } {
  const p2 = new Float64Array(params.length)
  const m2 = new Float64Array(params.length)
  const v2 = new Float64Array(params.length)
  for (let i = 0; i < params.length; i++) {
    const g = grads[i] * hp.gradScale
    m2[i] = hp.beta1 * m[i] + (1 - hp.beta1) * g
    v2[i] = hp.beta2 * v[i] + (1 - hp.beta2) * g * g
    const mhat = m2[i] / (1 - hp.beta1 ** hp.step)
    const vhat = v2[i] / (1 - hp.beta2 ** hp.step)
    p2[i] = params[i] - hp.lr * (mhat / (Math.sqrt(vhat) + hp.eps) + hp.weightDecay * params[i])
  }
  return { params: p2, m: m2, v: v2 }
}

/** Flash attention forward: attentionForward's out, plus lse [B,NH,T] = log sum_{t2<=t} exp(preatt). */
export function attentionFlashForward (qkv: F64, B: number, T: number, C: number, NH: number): { out: F64, lse: F64 } {
  const { out, preatt } = attentionForward(qkv, B, T, C, NH)
  const lse = new Float64Array(B * NH * T)
  for (let r = 0; r < B * NH * T; r++) {
    const t = r % T
    let max = -Infinity
    for (let t2 = 0; t2 <= t; t2++) max = Math.max(max, preatt[r * T + t2])
    let sum = 0
    for (let t2 = 0; t2 <= t; t2++) sum += Math.exp(preatt[r * T + t2] - max)
    lse[r] = max + Math.log(sum)
  }
  return { out, lse }
}

/**
 * Flash attention backward (FlashAttention's formulas, no T x T buffer kept): p = exp(s - lse),
 * dp = dout . v, ds = p (dp - D) with D = dout . out; dq += sc ds k, dk += sc ds q, dv += p dout.
 */
export function attentionFlashBackward (dout: F64, out: F64, qkv: F64, lse: F64, B: number, T: number, C: number, NH: number): F64 {
  const hs = C / NH
  const sc = 1 / Math.sqrt(hs)
  const dqkv = new Float64Array(B * T * 3 * C)
  const at = (b: number, t: number, h: number): number => (b * T + t) * 3 * C + h * hs // q of (b, t, h)
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let t = 0; t < T; t++) {
        const o = (b * T + t) * C + h * hs
        const q = at(b, t, h)
        let D = 0
        for (let i = 0; i < hs; i++) D += dout[o + i] * out[o + i]
        for (let t2 = 0; t2 <= t; t2++) {
          const k = at(b, t2, h) + C
          const v = k + C
          let s = 0; let dp = 0
          for (let i = 0; i < hs; i++) { s += qkv[q + i] * qkv[k + i]; dp += dout[o + i] * qkv[v + i] }
          const p = Math.exp(s * sc - lse[(b * NH + h) * T + t])
          const ds = p * (dp - D)
          for (let i = 0; i < hs; i++) {
            dqkv[q + i] += sc * ds * qkv[k + i]
            dqkv[k + i] += sc * ds * qkv[q + i]
            dqkv[v + i] += p * dout[o + i]
          }
        }
      }
    }
  }
  return dqkv
}

// ---- Llama layers (RMSNorm, rotary embeddings, SwiGLU) ----

export function rmsnormForward (inp: F64, weight: F64, eps: number, N: number, C: number): { out: F64, rstd: F64 } {
  const out = new Float64Array(N * C)
  const rstd = new Float64Array(N)
  for (let n = 0; n < N; n++) {
    let ms = 0
    for (let i = 0; i < C; i++) ms += inp[n * C + i] ** 2 / C
    const s = 1 / Math.sqrt(ms + eps)
    for (let i = 0; i < C; i++) out[n * C + i] = inp[n * C + i] * s * weight[i]
    rstd[n] = s
  }
  return { out, rstd }
}

/** norm = x * rstd; dinp = rstd * (dnorm - norm * mean(dnorm * norm)), dnorm = w * dout; dweight = sum dout * norm. */
export function rmsnormBackward (dout: F64, inp: F64, weight: F64, rstd: F64, N: number, C: number): { dinp: F64, dweight: F64 } {
  const dinp = new Float64Array(N * C)
  const dweight = new Float64Array(C)
  for (let n = 0; n < N; n++) {
    let m = 0
    for (let i = 0; i < C; i++) m += weight[i] * dout[n * C + i] * inp[n * C + i] * rstd[n] / C
    for (let i = 0; i < C; i++) {
      const norm = inp[n * C + i] * rstd[n]
      dinp[n * C + i] = rstd[n] * (weight[i] * dout[n * C + i] - norm * m)
      dweight[i] += dout[n * C + i] * norm
    }
  }
  return { dinp, dweight }
}

/**
 * Rotary embedding, `transformers`' rotate_half form: q' = q * cos + rotate_half(q) * sin with
 * rotate_half(x) = [-x2, x1], cos/sin of t * theta^(-2i/HS) repeated over both halves; on the q and
 * k parts of qkv [B,T,3C]; v copied. sign -1 rotates by -angle (R^T, the backward's map).
 */
export function ropeForward (qkv: F64, B: number, T: number, C: number, NH: number, theta: number, sign = 1): F64 {
  const hs = C / NH
  const half = hs / 2
  const out = Float64Array.from(qkv)
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < 2 * NH; h++) { // q heads, then k heads
        const base = (b * T + t) * 3 * C + h * hs
        for (let d = 0; d < hs; d++) {
          const a = t * theta ** (-2 * (d % half) / hs)
          const rot = d < half ? -qkv[base + d + half] : qkv[base + d - half]
          out[base + d] = qkv[base + d] * Math.cos(a) + rot * Math.sin(sign * a)
        }
      }
    }
  }
  return out
}

/** dinp = R^T dout: the rotation by -angle on q and k, v passed through. */
export function ropeBackward (dout: F64, B: number, T: number, C: number, NH: number, theta: number): F64 {
  return ropeForward(dout, B, T, C, NH, theta, -1)
}

export function swigluForward (inp: F64, N: number, H: number): F64 {
  const out = new Float64Array(N * H)
  for (let n = 0; n < N; n++) {
    for (let i = 0; i < H; i++) {
      const g = inp[n * 2 * H + i]
      out[n * H + i] = g / (1 + Math.exp(-g)) * inp[n * 2 * H + H + i]
    }
  }
  return out
}

export function swigluBackward (dout: F64, inp: F64, N: number, H: number): F64 {
  const dinp = new Float64Array(N * 2 * H)
  for (let n = 0; n < N; n++) {
    for (let i = 0; i < H; i++) {
      const g = inp[n * 2 * H + i]; const u = inp[n * 2 * H + H + i]
      const s = 1 / (1 + Math.exp(-g))
      dinp[n * 2 * H + i] = dout[n * H + i] * u * (s + g * s * (1 - s))
      dinp[n * 2 * H + H + i] = dout[n * H + i] * g * s
    }
  }
  return dinp
}
