// Native softmax + cross-entropy of the CPU backend, forward and backward, 8 lanes at a time. With a
// BPE vocabulary (V = 50,257) the head's softmax is tens of millions of exp() per step; kernels.ts
// runs them one Math.exp at a time (~40% of a llama-20m step), here they are vectorised.
// Semantics are kernels.ts's: probs = softmax(logits) row by row, loss = -log(probs[target]), rows
// with target < 0 get loss 0; a NaN anywhere in a row makes its probs and loss NaN.
#include <immintrin.h>
#include <math.h>
#include "addon.h"

typedef float v8 __attribute__((vector_size(32), aligned(4)));
typedef int32_t v8i __attribute__((vector_size(32), aligned(4)));

// e^x for x <= 0 (the row maximum is subtracted first): x = n ln2 + r with |r| <= ln2/2, then a degree-6
// polynomial for e^r (relative error ~2e-7) scaled by 2^n through the exponent bits. Below -87.3 the
// result would be denormal: it is 0 (the JS kernel's f32 store flushes such values to 0 or a denormal;
// either is far below what a loss can see). NaN passes through (min/max keep their second operand's NaN).
__attribute__((target("avx2,fma"))) static inline v8 exp8 (v8 x) {
  const v8 lo = (v8)_mm256_set1_ps(-87.3f);
  v8 xc = (v8)_mm256_max_ps((__m256)lo, (__m256)x);
  v8 n = (v8)_mm256_round_ps((__m256)(xc * 1.44269504088896341f), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  v8 r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  v8 p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  v8i e = ((v8i)_mm256_cvtps_epi32((__m256)n) + 127) << 23;
  v8 y = p * (v8)e;
  return (v8)_mm256_blendv_ps((__m256)y, _mm256_setzero_ps(), _mm256_cmp_ps((__m256)x, (__m256)lo, _CMP_LT_OQ));
}

__attribute__((target("avx2,fma"))) static void forwardRow (float *loss, float *probs, const float *logits, int32_t tgt, int64_t V) {
  // the maximum, NaN-sticky: a NaN logit must not be skipped as the JS comparison would then make the
  // whole row NaN anyway (exp(NaN)); here it is carried into the max and so into every prob
  float maxval = -INFINITY;
  int anyNan = 0;
  int64_t i = 0;
  __m256 vm = _mm256_set1_ps(-INFINITY);
  for (; i + 8 <= V; i += 8) {
    __m256 x = _mm256_loadu_ps(logits + i);
    anyNan |= _mm256_movemask_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    vm = _mm256_max_ps(vm, x);
  }
  float lanes[8];
  _mm256_storeu_ps(lanes, vm);
  for (int k = 0; k < 8; k++) if (lanes[k] > maxval) maxval = lanes[k];
  for (; i < V; i++) { if (logits[i] != logits[i]) anyNan = 1; else if (logits[i] > maxval) maxval = logits[i]; }
  if (anyNan) maxval = NAN;
  // exp and sum: 8 f32 partial sums per block of 512, blocks added in double
  double sum = 0;
  i = 0;
  while (i + 8 <= V) {
    v8 acc = { 0 };
    int64_t end = i + 512 < V ? i + 512 : V;
    for (; i + 8 <= end; i += 8) {
      v8 e = exp8(*(const v8 *)(logits + i) - maxval);
      *(v8 *)(probs + i) = e;
      acc += e;
    }
    for (int k = 0; k < 8; k++) sum += acc[k];
  }
  for (; i < V; i++) {
    float e = expf(logits[i] - maxval);
    probs[i] = e;
    sum += e;
  }
  const float inv = (float)(1.0 / sum);
  i = 0;
  for (; i + 8 <= V; i += 8) *(v8 *)(probs + i) *= inv;
  for (; i < V; i++) probs[i] *= inv;
  *loss = tgt < 0 ? 0.0f : -logf(probs[tgt]);
}

// dlogits[n,:] += (probs[n,:] - onehot(target)) * scale; rows with target < 0 untouched
__attribute__((target("avx2,fma"))) static void backwardRow (float *dlogits, const float *probs, int32_t tgt, float scale, int64_t V) {
  if (tgt < 0) return;
  int64_t i = 0;
  for (; i + 8 <= V; i += 8) *(v8 *)(dlogits + i) += *(const v8 *)(probs + i) * scale;
  for (; i < V; i++) dlogits[i] += probs[i] * scale;
  dlogits[tgt] -= scale;
}

static int check (napi_env env, int64_t len, int64_t N, int64_t V, int64_t r0, int64_t r1, const int64_t *rowPtrs, int nRow, const int64_t *nPtrs, int nN) {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) { nativeFail(env, "ERR_NATIVE_XENT_ISA", "cross-entropy: this CPU lacks AVX2+FMA"); return -1; }
  if (N < 0 || V < 1 || N > (1LL << 30) || V > (1LL << 30) || N * V > (1LL << 34) || r0 < 0 || r1 < r0 || r1 > N) { nativeFail(env, "ERR_NATIVE_XENT_ARGS", "cross-entropy: bad sizes or rows"); return -1; }
  for (int i = 0; i < nRow; i++) {
    if (rowPtrs[i] < 0 || (rowPtrs[i] & 3) != 0 || rowPtrs[i] + N * V * 4 > len) { nativeFail(env, "ERR_NATIVE_XENT_BOUNDS", "cross-entropy: a tensor lies outside the memory"); return -1; }
  }
  for (int i = 0; i < nN; i++) {
    if (nPtrs[i] < 0 || (nPtrs[i] & 3) != 0 || nPtrs[i] + N * 4 > len) { nativeFail(env, "ERR_NATIVE_XENT_BOUNDS", "cross-entropy: a tensor lies outside the memory"); return -1; }
  }
  return 0;
}

// crossEntropyForward(view, losses, probs, logits, targets, N, V, r0, r1): rows [r0, r1)
napi_value CrossEntropyForward (napi_env env, napi_callback_info info) {
  uint8_t *m; int64_t len, v[8];
  if (nativeArgs(env, info, "ERR_NATIVE_XENT_ARGS", 8, &m, &len, v) != 0) return NULL;
  const int64_t rows[2] = { v[1], v[2] }, ns[2] = { v[0], v[3] };
  const int64_t N = v[4], V = v[5];
  if (check(env, len, N, V, v[6], v[7], rows, 2, ns, 2) != 0) return NULL;
  const int32_t *targets = (const int32_t *)(m + v[3]);
  for (int64_t n = v[6]; n < v[7]; n++) {
    if (targets[n] >= V) { nativeFail(env, "ERR_NATIVE_XENT_ARGS", "cross-entropy: a target is outside the vocabulary"); return NULL; }
    forwardRow((float *)(m + v[0]) + n, (float *)(m + v[1]) + n * V, (const float *)(m + v[2]) + n * V, targets[n], V);
  }
  return NULL;
}

// crossEntropyBackward(view, dlogits, probs, targets, scale, N, V, r0, r1): rows [r0, r1)
napi_value CrossEntropyBackward (napi_env env, napi_callback_info info) {
  uint8_t *m; int64_t len, v[8];
  napi_value args[9];
  size_t argc = 9;
  double scale;
  // scale is a float: read it apart (nativeArgs reads integers)
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 9 || napi_get_value_double(env, args[4], &scale) != napi_ok) return nativeFail(env, "ERR_NATIVE_XENT_ARGS", "crossEntropyBackward takes (view, dlogits, probs, targets, scale, N, V, r0, r1)");
  if (nativeArgs(env, info, "ERR_NATIVE_XENT_ARGS", 8, &m, &len, v) != 0) return NULL;
  // v: dlogits, probs, targets, (scale read as an integer: ignored), N, V, r0, r1
  const int64_t rows[2] = { v[0], v[1] }, ns[1] = { v[2] };
  const int64_t N = v[4], V = v[5];
  if (check(env, len, N, V, v[6], v[7], rows, 2, ns, 1) != 0) return NULL;
  const int32_t *targets = (const int32_t *)(m + v[2]);
  for (int64_t n = v[6]; n < v[7]; n++) {
    if (targets[n] >= V) { nativeFail(env, "ERR_NATIVE_XENT_ARGS", "cross-entropy: a target is outside the vocabulary"); return NULL; }
    backwardRow((float *)(m + v[0]) + n * V, (const float *)(m + v[1]) + n * V, targets[n], (float)scale, V);
  }
  return NULL;
}
