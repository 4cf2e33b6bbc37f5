// ComputeBackend contract: opaque device tensors and the kernel set of a GPT-2 training step,
// llm.c style. Shapes in comments use B (batch), T (time), C (channels), NH (heads), V (vocab),
// N = B*T rows, OC (output channels).
//
// Every kernel is asynchronous: a GPU backend enqueues work, the CPU backend may run it on worker
// threads, so a training node's event loop stays free for networking. Kernels on one backend run
// in call order (a backend serializes them); awaiting a kernel's promise means its outputs are ready.
//
// Kernels check shapes and throw `ShapeError` (core/errors.ts) before touching memory.
// NaN/Inf policy: kernels propagate non-finite values IEEE-style and never throw on them;
// callers detect them through `sumSquares` (non-finite result) and skip the step.

export type DType = 'f32' | 'i32'

/** Opaque handle to backend memory. Only the backend that made it may use it. */
export interface Tensor {
  readonly shape: readonly number[]
  readonly dtype: DType
  /** Number of elements (product of shape). */
  readonly size: number
}

export interface BackendInfo {
  /** Backend name, e.g. 'cpu', 'webgpu', 'cuda'. */
  readonly name: string
  /** Free-form device description (adapter, CPU model, threads). */
  readonly device: string
  readonly threads?: number
  readonly [key: string]: unknown
}

export interface AdamWParams {
  lr: number
  beta1: number
  beta2: number
  eps: number
  weightDecay: number
  /** 1-based step count, for bias correction. */
  step: number
  /** Multiply gradients by this before the update (e.g. global-norm clipping, 1/microbatches). */
  gradScale: number
}

export interface ComputeBackend {
  readonly info: BackendInfo

  // ---- memory -------------------------------------------------------------------------------
  /** Zero-filled tensor. */
  alloc(shape: readonly number[], dtype?: DType): Tensor
  /** Tensor with a copy of `data`. `data.length` must equal the product of `shape`. */
  upload(data: Float32Array | Int32Array, shape: readonly number[]): Tensor
  /** Copy of the tensor's contents (Float32Array for f32, Int32Array for i32). */
  download(t: Tensor): Promise<Float32Array | Int32Array>
  /** Overwrite a tensor's contents from host memory (same size). */
  write(t: Tensor, data: Float32Array | Int32Array): Promise<void>
  free(t: Tensor): void
  /** Release every resource (workers, device). */
  dispose(): Promise<void>

  // ---- utilities ----------------------------------------------------------------------------
  fill(t: Tensor, value: number): Promise<void>
  /** dst = src (same size). */
  copy(dst: Tensor, src: Tensor): Promise<void>
  /** t *= s */
  scale(t: Tensor, s: number): Promise<void>
  /** dst += alpha * src (same size). */
  accumulate(dst: Tensor, src: Tensor, alpha?: number): Promise<void>
  /** Sum of squares of every element, in float64 on the host (global-norm clipping, NaN detection). */
  sumSquares(t: Tensor): Promise<number>

  // ---- layers, forward and backward (backward kernels ACCUMULATE (+=) into parameter grads
  //      and into dinp, like llm.c, so callers zero gradient buffers once per step) ----------
  /** out[B,T,C] = wte[inp[b,t]] + wpe[t].  inp: i32 [B,T]; wte [V,C]; wpe [maxT,C]. */
  encoderForward(out: Tensor, inp: Tensor, wte: Tensor, wpe: Tensor): Promise<void>
  encoderBackward(dwte: Tensor, dwpe: Tensor, dout: Tensor, inp: Tensor): Promise<void>

  /** LayerNorm over the last dim C of inp [N,C] (any leading dims). mean, rstd: [N]. eps 1e-5. */
  layernormForward(out: Tensor, mean: Tensor, rstd: Tensor, inp: Tensor, weight: Tensor, bias: Tensor): Promise<void>
  layernormBackward(dinp: Tensor, dweight: Tensor, dbias: Tensor, dout: Tensor, inp: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor): Promise<void>

  /** out[N,OC] = inp[N,C] @ weight[OC,C]^T + bias[OC] (bias optional). */
  matmulForward(out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor | null): Promise<void>
  matmulBackward(dinp: Tensor, dweight: Tensor, dbias: Tensor | null, dout: Tensor, inp: Tensor, weight: Tensor): Promise<void>

  /**
   * Causal multi-head self-attention. qkv [B,T,3C] (q, k, v concatenated on the last dim),
   * out [B,T,C], preatt and att [B,NH,T,T] (att = softmax of scaled, masked preatt).
   */
  attentionForward(out: Tensor, preatt: Tensor, att: Tensor, qkv: Tensor, NH: number): Promise<void>
  attentionBackward(dqkv: Tensor, dpreatt: Tensor, datt: Tensor, dout: Tensor, qkv: Tensor, att: Tensor, NH: number): Promise<void>
  /**
   * Causal multi-head attention without [B,NH,T,T] buffers (online softmax, FlashAttention-style):
   * qkv [B,T,3C] -> out [B,T,C] (equal to attentionForward's), lse [B,NH,T] (the log-sum-exp of
   * each row's scaled scores, kept for backward). Memory O(T·HS) per head.
   */
  attentionFlashForward(out: Tensor, lse: Tensor, qkv: Tensor, NH: number): Promise<void>
  /** Recomputes the probabilities from qkv and lse; ACCUMULATES into dqkv [B,T,3C]. */
  attentionFlashBackward(dqkv: Tensor, dout: Tensor, out: Tensor, qkv: Tensor, lse: Tensor, NH: number): Promise<void>

  /** GELU, tanh approximation (GPT-2). Elementwise, any shape. */
  geluForward(out: Tensor, inp: Tensor): Promise<void>
  geluBackward(dinp: Tensor, inp: Tensor, dout: Tensor): Promise<void>

  /** out = a + b (same size). Backward of a residual add is `accumulate` into both inputs. */
  residualForward(out: Tensor, a: Tensor, b: Tensor): Promise<void>

  /**
   * Fused softmax + cross-entropy. logits [N,V], targets i32 [N], probs [N,V], losses [N].
   * Targets < 0 are ignored (loss 0, zero gradient).
   */
  crossEntropyForward(losses: Tensor, probs: Tensor, logits: Tensor, targets: Tensor): Promise<void>
  /** dlogits[N,V] += (probs - onehot(targets)) * dlossScale (dlossScale usually 1/count). */
  crossEntropyBackward(dlogits: Tensor, probs: Tensor, targets: Tensor, dlossScale: number): Promise<void>

  /** AdamW in place: m, v moments; weight decay applied to params decoupled (p -= lr*wd*p). */
  adamwUpdate(params: Tensor, grads: Tensor, m: Tensor, v: Tensor, hp: AdamWParams): Promise<void>

  // ---- Llama layers (RMSNorm, rotary embeddings, SwiGLU); backward kernels ACCUMULATE too ----
  /** RMSNorm over the last dim C of inp [N,C] (any leading dims): out = inp * rstd * weight, rstd[N] = 1/sqrt(mean(inp^2) + eps). */
  rmsnormForward(out: Tensor, rstd: Tensor, inp: Tensor, weight: Tensor, eps: number): Promise<void>
  /** Accumulates into dinp [N,C] and dweight [C]. */
  rmsnormBackward(dinp: Tensor, dweight: Tensor, dout: Tensor, inp: Tensor, weight: Tensor, rstd: Tensor): Promise<void>
  /**
   * Rotary position embedding (Llama/GPT-NeoX "rotate half" layout, as `transformers`) applied to the
   * q and k parts of qkv [B,T,3C] (the first 2C channels of each row), heads of size HS = C/NH, position
   * t: for i < HS/2, angle t * theta^(-2i/HS), (x[i], x[i+HS/2]) -> (x[i] cos - x[i+HS/2] sin,
   * x[i] sin + x[i+HS/2] cos). The v part is copied unchanged. out may equal inp (in place). HS must be even.
   */
  ropeForward(out: Tensor, inp: Tensor, NH: number, theta: number): Promise<void>
  /** The transpose rotation: dinp += R^T dout on the q and k parts, dinp += dout on the v part. dinp must not alias dout. */
  ropeBackward(dinp: Tensor, dout: Tensor, NH: number, theta: number): Promise<void>
  /** SwiGLU: inp [N, 2H] = [gate | up] (any leading dims) -> out [N, H] = silu(gate) * up, silu(g) = g * sigmoid(g). */
  swigluForward(out: Tensor, inp: Tensor): Promise<void>
  /** Accumulates into dinp [N, 2H]. */
  swigluBackward(dinp: Tensor, dout: Tensor, inp: Tensor): Promise<void>
}

/** How a backend plugin exposes a factory; the plugin binds one instance under Tokens.ComputeBackend. */
export interface ComputeBackendFactory {
  readonly name: string
  create(options?: Record<string, unknown>): Promise<ComputeBackend>
}
