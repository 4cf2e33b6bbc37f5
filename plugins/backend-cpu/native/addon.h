// Shared by the native kernels' files (gemm.c, attention.c, gelu.c, xent.c): argument reading and typed errors.
#ifndef LAYERSWARM_ADDON_H
#define LAYERSWARM_ADDON_H
#include <node_api.h>
#include <stdint.h>

// Throws an Error with `code` (e.g. ERR_NATIVE_GEMM_ARGS) and returns NULL for the caller to return.
napi_value nativeFail (napi_env env, const char *code, const char *msg);

// Reads (view: Uint8Array over the memory, n numbers): base and length of the view, numbers into v.
// Throws ERR_NATIVE_<what>_ARGS and returns -1 on a wrong count or type.
int nativeArgs (napi_env env, napi_callback_info info, const char *code, size_t n, uint8_t **base, int64_t *len, int64_t *v);

napi_value AttentionForward (napi_env env, napi_callback_info info);
napi_value AttentionBackward (napi_env env, napi_callback_info info);
napi_value GeluForward (napi_env env, napi_callback_info info);
napi_value GeluBackward (napi_env env, napi_callback_info info);
napi_value CrossEntropyForward (napi_env env, napi_callback_info info);
napi_value CrossEntropyBackward (napi_env env, napi_callback_info info);
#endif
