// How averaging shards go on the wire: the run manifest names a codec per role ('parameter' for
// parameter averaging, 'parameter-grad' for pseudo-gradients); `none` / `raw` mean raw
// little-endian f32 (the wire layer's codec id 0, no plugin), anything else is looked up among the
// codecs plugins registered (core/codec-set.ts), the same rule as the pipeline's boundary codecs.
import type { Codec, TensorRole } from '../contracts/codec.ts'
import { CodecSet } from '../codec-set.ts'
import { CodecError } from '../errors.ts'
import { assertFiniteF32, float32View, RAW_CODEC_ID, type Frame } from '../wire/index.ts'

export type AveragingRole = Extract<TensorRole, 'parameter' | 'parameter-grad'>
export const RAW_NAMES: ReadonlySet<string> = new Set(['none', 'raw'])

export interface ShardCodecs {
  name(role: AveragingRole): string
  /** The codec's declared relMaxAbs for `role` (0 for raw). */
  relError(role: AveragingRole): number
  encode(role: AveragingRole, data: Float32Array): { codecId: number, bytes: Uint8Array }
  /** Decodes a frame's tensor: the run's codec for `role` only, element count as the header says, finite. */
  decode(role: AveragingRole, frame: Frame): Float32Array
  /** What a receiver of `bytes` (one encoded part) will hold: the owner keeps exactly what it sends. */
  decodeBytes(role: AveragingRole, codecId: number, bytes: Uint8Array): Float32Array
}

/** Codecs per averaging role from the manifest's choice; `codecs` are the registered plugin codecs. */
export function shardCodecs (choices: Readonly<Record<AveragingRole, string>>, codecs: Iterable<Codec> = []): ShardCodecs {
  const plugin: Partial<Record<AveragingRole, string>> = {}
  for (const role of ['parameter', 'parameter-grad'] as const) {
    if (!RAW_NAMES.has(choices[role])) plugin[role] = choices[role]
  }
  const set = new CodecSet(codecs, plugin)
  const isRaw = (role: AveragingRole): boolean => plugin[role] == null
  return {
    name: role => choices[role],
    relError: role => isRaw(role) ? 0 : set.forRole(role).errorBound.relMaxAbs,
    encode (role, data) {
      if (isRaw(role)) {
        // a copy: the caller may reuse its array while lower layers still hold the bytes
        return { codecId: RAW_CODEC_ID, bytes: new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)) }
      }
      return set.encode(role, data, [data.length])
    },
    decode (role, frame) {
      const h = frame.header
      const n = h.shape.reduce((a, b) => a * b, 1)
      let data: Float32Array
      if (isRaw(role)) {
        if (h.codecId !== RAW_CODEC_ID) throw new CodecError(`the run sends ${role} shards raw (codec 0), got codec id ${h.codecId}`)
        data = float32View(frame)
      } else {
        data = set.decode(role, h.codecId, frame.payload).data
      }
      if (data.length !== n) throw new CodecError(`${role} shard part holds ${data.length} values, the header shape says ${n}`)
      assertFiniteF32(data, `${role} shard`)
      return data
    },
    decodeBytes (role, codecId, bytes) {
      if (codecId === RAW_CODEC_ID) return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength))
      return set.decode(role, codecId, bytes).data
    }
  }
}
