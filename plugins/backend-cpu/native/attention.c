// Native causal attention of the CPU backend (the T x T path), forward and backward, for head sizes
// that are multiples of 8: the same arithmetic as kernels.ts attentionForward/attentionBackward (the
// references), with the q.k dots, the weighted sums of v and the row updates on 8-lane vectors.
// Pointers are byte offsets into the backend's shared memory; (b, h) pairs [p0, p1) per call.
#include <math.h>
#include <string.h>
#include "addon.h"

typedef float v8 __attribute__((vector_size(32), aligned(4)));

__attribute__((target("avx2,fma"))) static inline float dot (const float *x, const float *y, int hs) {
  v8 s = { 0 };
  for (int i = 0; i < hs; i += 8) s += *(const v8 *)(x + i) * *(const v8 *)(y + i);
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// y[0..hs) += a * x[0..hs)
__attribute__((target("avx2,fma"))) static inline void axpy (float *y, float a, const float *x, int hs) {
  for (int i = 0; i < hs; i += 8) *(v8 *)(y + i) += a * *(const v8 *)(x + i);
}

__attribute__((target("avx2,fma"))) static void forward (float *out, float *preatt, float *att, const float *qkv, int T, int C, int NH, int p0, int p1) {
  int hs = C / NH, C3 = 3 * C;
  float sc = 1.0f / sqrtf((float)hs);
  for (int p = p0; p < p1; p++) {
    int b = p / NH, h = p % NH;
    const float *base = qkv + (int64_t)b * T * C3 + h * hs;
    for (int t = 0; t < T; t++) {
      float *pre = preatt + ((int64_t)p * T + t) * T, *a = att + ((int64_t)p * T + t) * T;
      float maxval = -INFINITY;
      for (int t2 = 0; t2 <= t; t2++) {
        float s = dot(base + (int64_t)t * C3, base + (int64_t)t2 * C3 + C, hs) * sc;
        pre[t2] = s;
        if (s > maxval) maxval = s;
      }
      double sum = 0;
      for (int t2 = 0; t2 <= t; t2++) { float e = expf(pre[t2] - maxval); a[t2] = e; sum += e; }
      float inv = sum == 0 ? 0.0f : (float)(1.0 / sum);
      for (int t2 = 0; t2 <= t; t2++) a[t2] *= inv;
      for (int t2 = t + 1; t2 < T; t2++) { a[t2] = 0; pre[t2] = 0; }
      float *o = out + ((int64_t)b * T + t) * C + h * hs;
      memset(o, 0, (size_t)hs * 4);
      for (int t2 = 0; t2 <= t; t2++) axpy(o, a[t2], base + (int64_t)t2 * C3 + 2 * C, hs);
    }
  }
}

__attribute__((target("avx2,fma"))) static void backward (float *dqkv, float *dpreatt, float *datt, const float *dout, const float *qkv, const float *att, int T, int C, int NH, int p0, int p1) {
  int hs = C / NH, C3 = 3 * C;
  float sc = 1.0f / sqrtf((float)hs);
  for (int p = p0; p < p1; p++) {
    int b = p / NH, h = p % NH;
    const float *base = qkv + (int64_t)b * T * C3 + h * hs;
    float *dbase = dqkv + (int64_t)b * T * C3 + h * hs;
    for (int t = 0; t < T; t++) {
      const float *a = att + ((int64_t)p * T + t) * T;
      float *da = datt + ((int64_t)p * T + t) * T, *dp = dpreatt + ((int64_t)p * T + t) * T;
      const float *d = dout + ((int64_t)b * T + t) * C + h * hs;
      float s = 0; // sum_t2 att[t2] datt[t2]
      for (int t2 = 0; t2 <= t; t2++) {
        da[t2] = dot(base + (int64_t)t2 * C3 + 2 * C, d, hs);
        axpy(dbase + (int64_t)t2 * C3 + 2 * C, a[t2], d, hs);
        s += a[t2] * da[t2];
      }
      for (int t2 = 0; t2 <= t; t2++) dp[t2] = a[t2] * (da[t2] - s);
      for (int t2 = t + 1; t2 < T; t2++) { da[t2] = 0; dp[t2] = 0; }
      const float *q = base + (int64_t)t * C3;
      float *dq = dbase + (int64_t)t * C3;
      for (int t2 = 0; t2 <= t; t2++) {
        float g = dp[t2] * sc;
        axpy(dq, g, base + (int64_t)t2 * C3 + C, hs);
        axpy(dbase + (int64_t)t2 * C3 + C, g, q, hs);
      }
    }
  }
}

// Checks the shapes and that [off, off + bytes) of each tensor lies in the memory; 0 when fine.
static int checkShapes (napi_env env, int64_t len, const int64_t *v, int ptrs, int64_t B, int64_t T, int64_t C, int64_t NH, int64_t p0, int64_t p1, const int64_t *bytes) {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    nativeFail(env, "ERR_NATIVE_ATTENTION_ISA", "attention: this CPU lacks AVX2+FMA");
    return -1;
  }
  if (B < 1 || T < 1 || C < 1 || NH < 1 || C % NH != 0 || (C / NH) % 8 != 0 || B * T * C > (1LL << 30) || B * NH * T * T > (1LL << 30) || p0 < 0 || p1 < p0 || p1 > B * NH) {
    nativeFail(env, "ERR_NATIVE_ATTENTION_ARGS", "attention: bad shape (head size must be a multiple of 8) or (b, h) range");
    return -1;
  }
  for (int i = 0; i < ptrs; i++) {
    if (v[i] < 0 || (v[i] & 3) != 0 || v[i] + bytes[i] > len) {
      nativeFail(env, "ERR_NATIVE_ATTENTION_BOUNDS", "attention: a tensor lies outside the memory");
      return -1;
    }
  }
  return 0;
}

// attentionForward(view, out, preatt, att, qkv, B, T, C, NH, p0, p1)
napi_value AttentionForward (napi_env env, napi_callback_info info) {
  uint8_t *m; int64_t len, v[10];
  if (nativeArgs(env, info, "ERR_NATIVE_ATTENTION_ARGS", 10, &m, &len, v) != 0) return NULL;
  int64_t B = v[4], T = v[5], C = v[6], NH = v[7];
  int64_t bytes[4] = { B * T * C * 4, B * NH * T * T * 4, B * NH * T * T * 4, B * T * 3 * C * 4 };
  if (checkShapes(env, len, v, 4, B, T, C, NH, v[8], v[9], bytes) != 0) return NULL;
  forward((float *)(m + v[0]), (float *)(m + v[1]), (float *)(m + v[2]), (const float *)(m + v[3]), (int)T, (int)C, (int)NH, (int)v[8], (int)v[9]);
  return NULL;
}

// attentionBackward(view, dqkv, dpreatt, datt, dout, qkv, att, B, T, C, NH, p0, p1)
napi_value AttentionBackward (napi_env env, napi_callback_info info) {
  uint8_t *m; int64_t len, v[12];
  if (nativeArgs(env, info, "ERR_NATIVE_ATTENTION_ARGS", 12, &m, &len, v) != 0) return NULL;
  int64_t B = v[6], T = v[7], C = v[8], NH = v[9];
  int64_t tt = B * NH * T * T * 4;
  int64_t bytes[6] = { B * T * 3 * C * 4, tt, tt, B * T * C * 4, B * T * 3 * C * 4, tt };
  if (checkShapes(env, len, v, 6, B, T, C, NH, v[10], v[11], bytes) != 0) return NULL;
  backward((float *)(m + v[0]), (float *)(m + v[1]), (float *)(m + v[2]), (const float *)(m + v[3]), (const float *)(m + v[4]), (const float *)(m + v[5]), (int)T, (int)C, (int)NH, (int)v[10], (int)v[11]);
  return NULL;
}
