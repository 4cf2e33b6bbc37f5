// Native GELU (tanh approximation) of the CPU backend, forward and backward, 8 lanes at a time: the
// arithmetic of wasm/kernels.wat's gelu_forward/gelu_backward (Eigen's float32-accurate rational tanh,
// input clamped to +-7.905 where it rounds to +-1) without its per-vector call, which V8 does not inline.
#include <immintrin.h>
#include "addon.h"

typedef float v8 __attribute__((vector_size(32), aligned(4)));

#define TANH_BODY(T, x) \
  T x2 = x * x; \
  T p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f; \
  p = p * x2 + -8.60467152213735e-11f; p = p * x2 + 5.12229709037114e-08f; p = p * x2 + 1.48572235717979e-05f; \
  p = p * x2 + 6.37261928875436e-04f; p = p * x2 + 4.89352455891786e-03f; p = p * x; \
  T q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f; \
  q = q * x2 + 2.26843463243900e-03f; q = q * x2 + 4.89352518554385e-03f; \
  return p / q;

__attribute__((target("avx2,fma"))) static inline v8 tanh8 (v8 x) {
  __m256 lim = _mm256_set1_ps(7.90531110763549805f);
  // max/min return their second operand where either is NaN: a NaN x passes through both clamps
  x = (v8)_mm256_min_ps(lim, _mm256_max_ps(_mm256_sub_ps(_mm256_setzero_ps(), lim), (__m256)x));
  TANH_BODY(v8, x)
}

static inline float tanh1 (float x) {
  x = x < -7.90531110763549805f ? -7.90531110763549805f : x > 7.90531110763549805f ? 7.90531110763549805f : x;
  TANH_BODY(float, x)
}

// u = sqrt(2/pi) (x + 0.044715 x^3)
#define GELU_ARG(x) (0.7978845608028654f * ((x) + 0.044715f * ((x) * ((x) * (x)))))

__attribute__((target("avx2,fma"))) static void forward (float *out, const float *inp, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v8 x = *(const v8 *)(inp + i);
    *(v8 *)(out + i) = 0.5f * x * (1.0f + tanh8(GELU_ARG(x)));
  }
  for (; i < n; i++) out[i] = 0.5f * inp[i] * (1.0f + tanh1(GELU_ARG(inp[i])));
}

// dinp += (0.5 (1 + th) + 0.5 x (1 - th^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)) dout
__attribute__((target("avx2,fma"))) static void backward (float *dinp, const float *inp, const float *dout, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v8 x = *(const v8 *)(inp + i);
    v8 th = tanh8(GELU_ARG(x));
    v8 g = 0.5f * (1.0f + th) + (0.3989422804014327f * x) * (1.0f - th * th) * (1.0f + 0.134145f * (x * x));
    *(v8 *)(dinp + i) += g * *(const v8 *)(dout + i);
  }
  for (; i < n; i++) {
    float x = inp[i], th = tanh1(GELU_ARG(x));
    dinp[i] += (0.5f * (1.0f + th) + (0.3989422804014327f * x) * (1.0f - th * th) * (1.0f + 0.134145f * (x * x))) * dout[i];
  }
}

static int check (napi_env env, int64_t len, const int64_t *v, int ptrs, int64_t n) {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) { nativeFail(env, "ERR_NATIVE_GELU_ISA", "gelu: this CPU lacks AVX2+FMA"); return -1; }
  if (n < 0 || n > (1LL << 30)) { nativeFail(env, "ERR_NATIVE_GELU_ARGS", "gelu: bad length"); return -1; }
  for (int i = 0; i < ptrs; i++) {
    if (v[i] < 0 || (v[i] & 3) != 0 || v[i] + n * 4 > len) { nativeFail(env, "ERR_NATIVE_GELU_BOUNDS", "gelu: a tensor lies outside the memory"); return -1; }
  }
  return 0;
}

// geluForward(view, out, inp, n)
napi_value GeluForward (napi_env env, napi_callback_info info) {
  uint8_t *m; int64_t len, v[3];
  if (nativeArgs(env, info, "ERR_NATIVE_GELU_ARGS", 3, &m, &len, v) != 0 || check(env, len, v, 2, v[2]) != 0) return NULL;
  forward((float *)(m + v[0]), (const float *)(m + v[1]), v[2]);
  return NULL;
}

// geluBackward(view, dinp, inp, dout, n)
napi_value GeluBackward (napi_env env, napi_callback_info info) {
  uint8_t *m; int64_t len, v[4];
  if (nativeArgs(env, info, "ERR_NATIVE_GELU_ARGS", 4, &m, &len, v) != 0 || check(env, len, v, 3, v[3]) != 0) return NULL;
  backward((float *)(m + v[0]), (const float *)(m + v[1]), (const float *)(m + v[2]), v[3]);
  return NULL;
}
