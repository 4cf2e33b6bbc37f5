// Subspace-constrained stage boundaries (after Pluralis' "protocol models"): every block before a
// boundary may write into the residual stream only inside one fixed k-dimensional subspace span(U)
// of the C channels (its output projections' columns are kept in span(U)), so the stream that
// crosses a boundary is exactly
//
//   x[N,C] = e[N,C] + z[N,k] U^T        e = the token embeddings of the N positions, U [C,k] orthonormal
//
// The sender sends z = (x - e) U (k values per token, then any codec: int8-block), the receiver,
// which knows the tokens and holds the embedding table, rebuilds x. Backward is the same subspace:
// the sender's blocks only ever see U U^T g of the boundary gradient g (every write into the stream
// went through U), so g U (k values) is all that crosses back; the rest, (I - U U^T) g, only reaches
// the token embeddings directly and is added there by the receiver (`residualGradient`).
//
// Unlike the learned bottleneck (which squeezes the whole stream, token identity included, into k
// channels), nothing here is lost on the wire beyond the codec's rounding: the price is paid in the
// model, whose early blocks write into k of C channels. U is fixed and seeded: both sides derive
// the same basis from (C, k, seed), so it never crosses the wire.
import { LayerswarmError, NonFiniteError, ShapeError } from '../errors.ts'
import { Prng } from '../model/prng.ts'

/** A subspace setting that cannot exist (k out of 1..C, a non-integer seed). */
export class SubspaceConfigError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_SUBSPACE_CONFIG', message)
  }
}

/** Orthonormal columns U [C,k] (row-major: u[c*k + j]) drawn from a seeded Gaussian, Gram-Schmidt twice in float64. */
export function subspaceBasis (C: number, k: number, seed = 0): Float64Array {
  if (!Number.isSafeInteger(C) || C < 1) throw new SubspaceConfigError(`subspace: the stream width C must be a positive integer, got ${C}`)
  if (!Number.isSafeInteger(k) || k < 1 || k > C) throw new SubspaceConfigError(`subspace: k must be an integer in [1, ${C}], got ${k}`)
  if (!Number.isSafeInteger(seed) || seed < 0) throw new SubspaceConfigError(`subspace: seed must be a non-negative integer, got ${seed}`)
  const rng = new Prng(`subspace:${C}:${k}:${seed}`)
  const u = new Float64Array(C * k)
  for (let i = 0; i < u.length; i++) u[i] = rng.normal()
  for (let j = 0; j < k; j++) {
    // twice: one pass of classical Gram-Schmidt leaves O(eps * cond) of the earlier columns
    for (let pass = 0; pass < 2; pass++) {
      for (let i = 0; i < j; i++) {
        let dot = 0
        for (let c = 0; c < C; c++) dot += u[c * k + i] * u[c * k + j]
        for (let c = 0; c < C; c++) u[c * k + j] -= dot * u[c * k + i]
      }
    }
    let norm = 0
    for (let c = 0; c < C; c++) norm += u[c * k + j] ** 2
    norm = Math.sqrt(norm)
    for (let c = 0; c < C; c++) u[c * k + j] /= norm
  }
  return u
}

/** The boundary maps of one (C, k, seed) subspace; every method takes flat row-major [N, ...] arrays. */
export class BoundarySubspace {
  readonly C: number
  readonly k: number
  readonly seed: number
  /** U [C,k], orthonormal columns. */
  readonly basis: Float64Array

  constructor (C: number, k: number, seed = 0) {
    this.basis = subspaceBasis(C, k, seed)
    this.C = C
    this.k = k
    this.seed = seed
  }

  /** Nominal ratio against f32 [N,C] before any codec: C / k. */
  get ratio (): number { return this.C / this.k }

  /** z [N,k] = (x - e) U: the coordinates the sender sends. */
  encodeActivation (x: Float32Array, e: Float32Array): Float32Array {
    const N = this.rows('x', x, this.C)
    this.check('e', e, N * this.C)
    return this.toSubspace(x, e, N)
  }

  /** x [N,C] = e + z U^T: the stream the receiver rebuilds. */
  decodeActivation (z: Float32Array, e: Float32Array): Float32Array {
    const N = this.rows('z', z, this.k)
    this.check('e', e, N * this.C)
    return this.fromSubspace(z, N, e)
  }

  /** g U [N,k]: the boundary gradient's part the sender's blocks can see. */
  encodeGradient (g: Float32Array): Float32Array {
    return this.toSubspace(g, null, this.rows('g', g, this.C))
  }

  /** (g U) U^T [N,C]: what the sender back-propagates. */
  decodeGradient (zg: Float32Array): Float32Array {
    return this.fromSubspace(zg, this.rows('zg', zg, this.k), null)
  }

  /** g - (g U) U^T [N,C]: the part that only reaches the token embeddings (kept by the receiver). */
  residualGradient (g: Float32Array): Float32Array {
    const N = this.rows('g', g, this.C)
    const inside = this.fromSubspace(this.toSubspace(g, null, N), N, null)
    for (let i = 0; i < inside.length; i++) inside[i] = g[i] - inside[i]
    return inside
  }

  /**
   * In place W <- U U^T W for W [C, cols] (an output projection into the stream: rows are stream
   * channels): its columns land in span(U), so the block writes only there.
   */
  projectColumns (w: Float32Array, cols: number): void {
    const { C, k, basis: u } = this
    if (!Number.isSafeInteger(cols) || cols < 1 || w.length !== C * cols) throw new ShapeError(`subspace: a [${C}, cols] projection was expected, got ${w.length} values for cols = ${cols}`)
    this.finite('W', w)
    const t = new Float64Array(k)
    for (let col = 0; col < cols; col++) {
      t.fill(0)
      for (let c = 0; c < C; c++) {
        const v = w[c * cols + col]
        for (let j = 0; j < k; j++) t[j] += u[c * k + j] * v
      }
      for (let c = 0; c < C; c++) {
        let s = 0
        for (let j = 0; j < k; j++) s += u[c * k + j] * t[j]
        w[c * cols + col] = s
      }
    }
  }

  /** ||(I - U U^T)(x - e)|| / ||x - e||: 0 when the stream obeys the constraint (a check, not a codec step). */
  outsideShare (x: Float32Array, e: Float32Array): number {
    const N = this.rows('x', x, this.C)
    this.check('e', e, N * this.C)
    const back = this.fromSubspace(this.toSubspace(x, e, N), N, null)
    let out = 0
    let all = 0
    for (let i = 0; i < x.length; i++) {
      const d = x[i] - e[i]
      out += (d - back[i]) ** 2
      all += d * d
    }
    return all > 0 ? Math.sqrt(out / all) : 0
  }

  private toSubspace (x: Float32Array, e: Float32Array | null, N: number): Float32Array {
    this.finite('input', x)
    if (e != null) this.finite('e', e)
    const { C, k, basis: u } = this
    const z = new Float32Array(N * k)
    const acc = new Float64Array(k)
    for (let n = 0; n < N; n++) {
      acc.fill(0)
      for (let c = 0; c < C; c++) {
        const v = e != null ? x[n * C + c] - e[n * C + c] : x[n * C + c]
        if (v === 0) continue
        for (let j = 0; j < k; j++) acc[j] += v * u[c * k + j]
      }
      for (let j = 0; j < k; j++) z[n * k + j] = acc[j]
    }
    return z
  }

  private fromSubspace (z: Float32Array, N: number, e: Float32Array | null): Float32Array {
    this.finite('z', z)
    if (e != null) this.finite('e', e)
    const { C, k, basis: u } = this
    const x = new Float32Array(N * C)
    for (let n = 0; n < N; n++) {
      for (let c = 0; c < C; c++) {
        let s = e != null ? e[n * C + c] : 0
        for (let j = 0; j < k; j++) s += z[n * k + j] * u[c * k + j]
        x[n * C + c] = s
      }
    }
    return x
  }

  /** N rows of `width`, or a ShapeError. */
  private rows (name: string, a: Float32Array, width: number): number {
    if (!(a instanceof Float32Array)) throw new ShapeError(`subspace: ${name} must be a Float32Array`)
    if (a.length % width !== 0) throw new ShapeError(`subspace: ${name} has ${a.length} values, not a whole number of rows of ${width}`)
    return a.length / width
  }

  private check (name: string, a: Float32Array, n: number): void {
    if (!(a instanceof Float32Array) || a.length !== n) throw new ShapeError(`subspace: ${name} must hold ${n} values (the rows of the other input), got ${a?.length}`)
  }

  private finite (name: string, a: Float32Array): void {
    for (let i = 0; i < a.length; i++) {
      if (!Number.isFinite(a[i])) throw new NonFiniteError(`subspace: ${name}[${i}] is ${a[i]}`)
    }
  }
}
