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

/** Params bytes of each built-in format (see each codec's file). */
const PARAM_BYTES: Readonly<Record<number, number>> = { 1: 0, 2: 4, 3: 4, 4: 4, 5: 4, 6: 8, 7: 8, 8: 8 }

/**
 * Length of the common header at the start of a built-in codec's message (12 + 4 * rank + params),
 * from its id and rank bytes; for tools and the compliance suite's header-corruption checks.
 */
export function builtinHeaderLength (bytes: Uint8Array): number {
  if (bytes.length < 4) return bytes.length
  const id = bytes[0] | (bytes[1] << 8)
  return 12 + 4 * Math.min(bytes[3], 8) + (PARAM_BYTES[id] ?? 0)
}
