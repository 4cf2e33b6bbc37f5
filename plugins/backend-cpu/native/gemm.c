// Native GEMM of the CPU backend (optional): C(+)= A @ B (+ bias) on the backend's shared WASM memory,
// with AVX-512 or AVX2+FMA micro-kernels picked at run time. Built at `npm install` where a C compiler
// exists (build.mjs); where it is absent or the CPU lacks AVX2/FMA, the WASM GEMM runs instead.
// Same addressing as wasm/kernels.wat's gemm, all in BYTES from the memory's base:
//   A(m, k) at A + (m & ~3)*sam + (m & 3)*sar + k*sak   (plain view: sar = sam; 4-row packed: sar = 4)
//   B(k, j) at B + k*sbk + j*sbj;  C(m, j) at C + m*ldc + j*4;  bias: 0 (none) or pointer to bias[N]
// beta 0: C = A@B + bias; beta 1: C += A@B + bias. Goto-style blocking: B is packed in NR-column
// panels per KC slice (a panel stays in L1); A is read in place or packed per MC block (see run).
#include "addon.h"
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KC 256
#define MC 192 // a multiple of both MR (8 and 6)

typedef struct { const uint8_t *A; int64_t sam, sar, sak; const uint8_t *B; int64_t sbk, sbj; uint8_t *C; int64_t ldc; int M, K, N, beta; const float *bias; } Job;

static int MR = 0, NR = 0; // the micro-kernel's tile, set with it (pickIsa)
static _Thread_local float *scratch = NULL;
static _Thread_local size_t scratchLen = 0;

// Frees this thread's packing buffer when its Node environment (the main thread's or a worker's) ends.
static void freeScratch (void *unused) {
  (void)unused;
  free(scratch);
  scratch = NULL;
  scratchLen = 0;
}

static float *scratchFor (size_t floats) {
  if (floats > scratchLen) {
    free(scratch);
    scratch = aligned_alloc(64, ((floats * 4 + 63) / 64) * 64);
    scratchLen = scratch == NULL ? 0 : floats;
  }
  return scratch;
}

// Where row m of A starts (A(m, k) = rowA(m) + k*sak); rows past M repeat row M - 1 (their results are dropped)
static inline const uint8_t *rowA (const Job *j, int m) {
  if (m >= j->M) m = j->M - 1;
  return j->A + (int64_t)(m & ~3) * j->sam + (int64_t)(m & 3) * j->sar;
}

// Rows [i0, i0 + mc) of A, k in [k0, k0 + kc), packed in MR-row panels: dst[(p*kc + k)*MR + r] = A(i0 + p*MR + r, k0 + k)
static void packA (const Job *j, int i0, int mc, int k0, int kc, float *dst) {
  const uint8_t *rows[8];
  for (int p = 0; p < mc; p += MR) {
    for (int r = 0; r < MR; r++) rows[r] = rowA(j, i0 + p + r) + (int64_t)k0 * j->sak;
    for (int k = 0; k < kc; k++) {
      for (int r = 0; r < MR; r++) dst[r] = *(const float *)(rows[r] + (int64_t)k * j->sak);
      dst += MR;
    }
  }
}

// dst[(p*kc + k)*NR + c] = B(k0 + k, p*NR + c), zero past column N
static void packB (const Job *j, int k0, int kc, int NR, float *dst) {
  for (int p = 0; p < j->N; p += NR) {
    int w = j->N - p < NR ? j->N - p : NR;
    for (int k = 0; k < kc; k++) {
      const uint8_t *row = j->B + (int64_t)(k0 + k) * j->sbk + (int64_t)p * j->sbj;
      if (j->sbj == 4) memcpy(dst + (size_t)k * NR, row, (size_t)w * 4);
      else if (j->sbk != 4) for (int c = 0; c < w; c++) dst[(size_t)k * NR + c] = *(const float *)(row + (int64_t)c * j->sbj);
      for (int c = w; c < NR; c++) dst[(size_t)k * NR + c] = 0.0f;
    }
    if (j->sbj != 4 && j->sbk == 4) { // B^T row-major (W in the forward pass): read each column's run along k
      for (int c = 0; c < w; c++) {
        const float *col = (const float *)(j->B + (int64_t)k0 * 4 + (int64_t)(p + c) * j->sbj);
        for (int k = 0; k < kc; k++) dst[(size_t)k * NR + c] = col[k];
      }
    }
    dst += (size_t)kc * NR;
  }
}

// Adds the MR x NR tile (row-major, ld NR) into C rows i, columns jc, only the mr x nr valid part;
// first: the first K slice, where beta and the bias apply.
static void storeTile (const Job *j, const float *t, int NR, int i, int jc, int mr, int nr, int first) {
  for (int r = 0; r < mr; r++) {
    float *c = (float *)(j->C + (int64_t)(i + r) * j->ldc) + jc;
    for (int q = 0; q < nr; q++) {
      float v = t[r * NR + q];
      if (first) { if (j->bias != NULL) v += j->bias[jc + q]; if (j->beta) v += c[q]; } else v += c[q];
      c[q] = v;
    }
  }
}

// One MR x NR tile: acc = A rows ar[0..MR) (k0.. k0+kc, stride sak) @ the packed B panel b; then
// c[r*ldc + q] = acc (+ bias[q] where bias) (+ old c where addC). A is read in place, not packed: every
// layout the backend passes (row-major, transposed, 4-row panels) is a row pointer plus k*sak.
typedef void (*Kernel) (int kc, const uint8_t *const *ar, int64_t sak, const float *b, float *c, int64_t ldc, int addC, const float *bias);

// 8 x 32 tile: 16 zmm accumulators, one broadcast of A per row and k.
__attribute__((target("avx512f"))) static void kernel512 (int kc, const uint8_t *const *ar, int64_t sak, const float *b, float *c, int64_t ldc, int addC, const float *bias) {
  __m512 acc[8][2];
  const uint8_t *a[8];
  for (int r = 0; r < 8; r++) { acc[r][0] = _mm512_setzero_ps(); acc[r][1] = _mm512_setzero_ps(); a[r] = ar[r]; }
  for (int64_t off = 0, k = 0; k < kc; k++, off += sak, b += 32) {
    __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
    for (int r = 0; r < 8; r++) {
      __m512 x = _mm512_set1_ps(*(const float *)(a[r] + off));
      acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < 8; r++) {
    for (int h = 0; h < 2; h++) {
      __m512 v = acc[r][h];
      if (bias != NULL) v = _mm512_add_ps(v, _mm512_loadu_ps(bias + 16 * h));
      if (addC) v = _mm512_add_ps(v, _mm512_loadu_ps(c + r * ldc + 16 * h));
      _mm512_storeu_ps(c + r * ldc + 16 * h, v);
    }
  }
}

// 6 x 16 tile: 12 ymm accumulators (of 16 registers).
__attribute__((target("avx2,fma"))) static void kernel256 (int kc, const uint8_t *const *ar, int64_t sak, const float *b, float *c, int64_t ldc, int addC, const float *bias) {
  __m256 acc[6][2];
  const uint8_t *a[6];
  for (int r = 0; r < 6; r++) { acc[r][0] = _mm256_setzero_ps(); acc[r][1] = _mm256_setzero_ps(); a[r] = ar[r]; }
  for (int64_t off = 0, k = 0; k < kc; k++, off += sak, b += 16) {
    __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    for (int r = 0; r < 6; r++) {
      __m256 x = _mm256_broadcast_ss((const float *)(a[r] + off));
      acc[r][0] = _mm256_fmadd_ps(x, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(x, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < 6; r++) {
    for (int h = 0; h < 2; h++) {
      __m256 v = acc[r][h];
      if (bias != NULL) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + 8 * h));
      if (addC) v = _mm256_add_ps(v, _mm256_loadu_ps(c + r * ldc + 8 * h));
      _mm256_storeu_ps(c + r * ldc + 8 * h, v);
    }
  }
}

static Kernel kernel = NULL;
static const char *isa = NULL;

// The widest kernel the CPU runs, no wider than `cap` ("avx2": the AVX2 kernel even on an AVX-512 CPU,
// so tests check both). Process-wide: only call it while no GEMM runs.
static void pickIsa (const char *cap) {
  __builtin_cpu_init();
  int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (__builtin_cpu_supports("avx512f") && (cap == NULL || strcmp(cap, "avx512") == 0)) { kernel = kernel512; MR = 8; NR = 32; isa = "avx512"; } else if (avx2) { kernel = kernel256; MR = 6; NR = 16; isa = "avx2"; }
}

static int run (const Job *j) {
  // A is read in place where its rows run along k (sak 4) or it is already in 4-row panels (sar 4, sak
  // 16: dout^T, packed once per thread per job by the caller): no packing, which small matmuls (K = 128,
  // a chunk of 96 columns) would pay for on every chunk. Else it is packed per MC x KC block: rows
  // strided along k (each k a new cache line), or rows a multiple of 4 KiB apart (all in one L1 set,
  // evicting each other).
  int panels4 = j->sar == 4 && j->sak == 16;
  int pack = !panels4 && (j->sak != 4 || j->sam % 4096 == 0 || j->sar % 4096 == 0);
  size_t np = (size_t)(j->N + NR - 1) / NR;
  float *bp = scratchFor(np * NR * KC + (size_t)MR * NR + (size_t)MC * KC + 16);
  if (bp == NULL) return -1;
  float *tile = bp + np * NR * KC;
  float *ap = tile + (size_t)MR * NR;
  const uint8_t *ar[8];
  int64_t ldc = j->ldc / 4;
  for (int k0 = 0; k0 < j->K; k0 += KC) {
    int kc = j->K - k0 < KC ? j->K - k0 : KC;
    int first = k0 == 0;
    packB(j, k0, kc, NR, bp);
    for (int i0 = 0; i0 < j->M; i0 += MC) { // MC rows of A (x kc) stay in L2 while the B panels pass
      int i1 = j->M - i0 < MC ? j->M : i0 + MC;
      if (pack) packA(j, i0, i1 - i0, k0, kc, ap);
      for (size_t p = 0; p < np; p++) {
        int jc = (int)p * NR;
        int nr = j->N - jc < NR ? j->N - jc : NR;
        const float *bias = first && j->bias != NULL ? j->bias + jc : NULL;
        for (int i = i0; i < i1; i += MR) {
          int mr = i1 - i < MR ? i1 - i : MR;
          for (int r = 0; r < MR; r++) {
            ar[r] = pack ? (const uint8_t *)(ap + (size_t)(i - i0) * kc + r) : rowA(j, i + r) + (int64_t)k0 * j->sak;
          }
          int64_t sak = pack ? MR * 4 : j->sak;
          if (mr == MR && nr == NR) {
            kernel(kc, ar, sak, bp + p * NR * kc, (float *)(j->C + (int64_t)i * j->ldc) + jc, ldc, first ? j->beta : 1, bias);
          } else { // a partial tile: through the tile buffer, only its valid part stored
            kernel(kc, ar, sak, bp + p * NR * kc, tile, NR, 0, NULL);
            storeTile(j, tile, NR, i, jc, mr, nr, first);
          }
        }
      }
    }
  }
  return 0;
}

napi_value nativeFail (napi_env env, const char *code, const char *msg) {
  napi_throw_error(env, code, msg);
  return NULL;
}

int nativeArgs (napi_env env, napi_callback_info info, const char *code, size_t n, uint8_t **base, int64_t *len, int64_t *v) {
  size_t argc = 16;
  napi_value argv[16];
  napi_typedarray_type type;
  size_t bytes;
  void *data;
  if (n + 1 > 16 || napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != n + 1) { nativeFail(env, code, "wrong number of arguments"); return -1; }
  if (napi_get_typedarray_info(env, argv[0], &type, &bytes, &data, NULL, NULL) != napi_ok || type != napi_uint8_array) { nativeFail(env, code, "argument 0 must be a Uint8Array over the memory"); return -1; }
  for (size_t i = 0; i < n; i++) {
    if (napi_get_value_int64(env, argv[i + 1], &v[i]) != napi_ok) { nativeFail(env, code, "the arguments after the view must be numbers"); return -1; }
  }
  *base = data;
  *len = (int64_t)bytes;
  return 0;
}

// gemm(view: Uint8Array over the memory, A, sam, sar, sak, B, sbk, sbj, C, ldc, M, K, N, beta, bias)
static napi_value Gemm (napi_env env, napi_callback_info info) {
  uint8_t *base;
  int64_t len, v[14];
  if (nativeArgs(env, info, "ERR_NATIVE_GEMM_ARGS", 14, &base, &len, v) != 0) return NULL;
  int64_t A = v[0], sam = v[1], sar = v[2], sak = v[3], B = v[4], sbk = v[5], sbj = v[6], C = v[7], ldc = v[8], M = v[9], K = v[10], N = v[11], bias = v[13];
  if (M < 0 || K < 0 || N < 0 || M > 1 << 24 || K > 1 << 24 || N > 1 << 24 || sam < 0 || sar < 0 || sak < 0 || sbk < 0 || sbj < 0 || ldc < 0 || A < 0 || B < 0 || C < 0 || bias < 0) return nativeFail(env, "ERR_NATIVE_GEMM_ARGS", "gemm: negative or huge argument");
  if (kernel == NULL) return nativeFail(env, "ERR_NATIVE_GEMM_ISA", "gemm: this CPU has neither AVX-512 nor AVX2+FMA");
  if (M == 0 || K == 0 || N == 0) return NULL;
  // every byte read or written must lie inside the memory (a bad offset must not corrupt the process)
  int64_t aEnd = A + ((M - 1) & ~3) * sam + ((M - 1) & 3) * sar + (K - 1) * sak + 4;
  int64_t bEnd = B + (K - 1) * sbk + (N - 1) * sbj + 4;
  int64_t cEnd = C + (M - 1) * ldc + N * 4;
  if (aEnd > len || bEnd > len || cEnd > len || (bias != 0 && bias + N * 4 > len)) return nativeFail(env, "ERR_NATIVE_GEMM_BOUNDS", "gemm: an operand lies outside the memory");
  if ((C | ldc | bias) & 3) return nativeFail(env, "ERR_NATIVE_GEMM_ARGS", "gemm: C, ldc and bias must be 4-byte aligned");
  Job j = { base + A, sam, sar, sak, base + B, sbk, sbj, base + C, ldc, (int)M, (int)K, (int)N, v[12] != 0, bias == 0 ? NULL : (const float *)(base + bias) };
  if (run(&j) != 0) return nativeFail(env, "ERR_NATIVE_GEMM_MEMORY", "gemm: out of memory for packing buffers");
  return NULL;
}

static napi_value Isa (napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  if (isa == NULL) napi_get_null(env, &out); else napi_create_string_utf8(env, isa, NAPI_AUTO_LENGTH, &out);
  return out;
}

// useIsa(cap: 'avx512' | 'avx2'): returns the kernel now in use (for tests; see pickIsa)
static napi_value UseIsa (napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg;
  char cap[16] = "";
  size_t n;
  if (napi_get_cb_info(env, info, &argc, &arg, NULL, NULL) != napi_ok || argc != 1 || napi_get_value_string_utf8(env, arg, cap, sizeof cap, &n) != napi_ok) return nativeFail(env, "ERR_NATIVE_GEMM_ARGS", "useIsa takes 'avx512' or 'avx2'");
  pickIsa(cap);
  return Isa(env, info);
}

NAPI_MODULE_INIT () {
  if (isa == NULL) pickIsa(NULL);
  napi_add_env_cleanup_hook(env, freeScratch, NULL);
  static const struct { const char *name; napi_callback fn; } fns[] = {
    { "gemm", Gemm }, { "isa", Isa }, { "useIsa", UseIsa },
    { "attentionForward", AttentionForward }, { "attentionBackward", AttentionBackward },
    { "geluForward", GeluForward }, { "geluBackward", GeluBackward },
    { "crossEntropyForward", CrossEntropyForward }, { "crossEntropyBackward", CrossEntropyBackward }
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
  return exports;
}
