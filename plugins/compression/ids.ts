// Wire ids of the built-in codecs. Stable: an id, once released, always means the same format (a
// format change bumps the header's version byte instead). 0 is the wire layer's raw format;
// 1..1023 are reserved for built-ins; third-party codecs pick from 1024..65535 (docs/compression.md).
export const CodecIds = Object.freeze({
  fp32: 1,
  fp16: 2,
  bf16: 3,
  'int8-block': 4,
  'int4-block': 5,
  topk: 6,
  'topk.fp16': 7,
  'topk.int8-block': 8
} as const)

/** First id third-party codecs may use. */
export const FIRST_USER_CODEC_ID = 1024
