// The raw format as a codec (hivemind's NoCompression): little-endian f32 elements, no header of
// its own, wire id 0 (the wire layer's RAW_CODEC_ID), name `none` (alias `raw`). It lives in core
// and every CodecSet knows it, so a run that sends raw tensors needs no plugin and no code path
// treats raw specially. It stores no shape: the frame header carries the dims (`shapeless`).
//
// Lossless, so encode does not scan for NaN/Inf: the tensor codecs adapter checks every tensor on
// its way out and in (core/codecs/tensor-codecs.ts).
import type { Codec, DecodedTensor, TensorRole } from '../contracts/codec.ts'
import { CodecError, ShapeError } from '../errors.ts'
import { float32Bytes, float32Of } from '../wire/finite.ts'
import { RAW_CODEC_ID } from '../wire/header.ts'

export const rawCodec: Codec = Object.freeze({
  id: RAW_CODEC_ID,
  name: 'none',
  aliases: Object.freeze(['raw']),
  shapeless: true,
  errorBound: Object.freeze({ relMaxAbs: 0 }),
  nominalRatio: 1,
  encode (data: Float32Array, shape: readonly number[], _role: TensorRole): Uint8Array {
    const n = shape.reduce((a, b) => a * b, 1)
    if (n !== data.length) throw new ShapeError(`none: shape [${shape.join(', ')}] holds ${n} elements but data has ${data.length}`)
    // a copy: the caller may reuse its array while lower layers still hold the bytes
    const bytes = float32Bytes(data)
    return bytes.buffer === data.buffer ? bytes.slice() : bytes
  },
  decode (bytes: Uint8Array): DecodedTensor {
    if (bytes.byteLength % 4 !== 0) throw new CodecError(`raw f32 payload of ${bytes.byteLength} bytes is not a whole number of elements`)
    // a view of the payload where aligned: frames are never reused once decoded
    const data = float32Of(bytes)
    return { data, shape: [data.length] }
  }
})

/** Every name a run manifest may use for the raw codec. */
export const RAW_CODEC_NAMES: ReadonlySet<string> = new Set([rawCodec.name, ...(rawCodec.aliases ?? [])])
