// The one adapter between tensors and the wire, for every role: boundary tensors (activation,
// activation-grad; the pipeline node, the compressed chain) and averaging shards (parameter,
// parameter-grad; the butterfly all-reduce). The run manifest names a codec per role; the name is
// looked up in a CodecSet (core/codec-set.ts), which always knows the raw codec (`none` / `raw`,
// wire id 0, core/codecs/raw.ts) and every codec plugins registered under Tokens.Codec.
//
// Where data leaves and enters this node, in one place each:
//   encode  finite check (core/wire/finite.ts), then the role's codec -> { codecId, bytes }
//   decode  the role's codec only (UnknownCodecError, CodecNotAllowedError), dtype f32, the
//           codec's dims against the frame header's, the element count, then the finite check
import type { DependencyContainer } from 'tsyringe'
import type { Codec, TensorRole } from '../contracts/codec.ts'
import { CodecSet } from '../codec-set.ts'
import { CodecError } from '../errors.ts'
import { assertFiniteF32 } from '../wire/finite.ts'
import type { Frame } from '../wire/header.ts'

export type BoundaryRole = Extract<TensorRole, 'activation' | 'activation-grad'>
export type AveragingRole = Extract<TensorRole, 'parameter' | 'parameter-grad'>

/**
 * The built-in plugin that registers the codecs a manifest names (fp32, fp16, int8-block, ...): a
 * node whose run uses any codec but raw loads it (`start` adds it to the node's plugins).
 */
export const CODEC_PLUGIN = 'compression'

export interface EncodedTensor {
  readonly codecId: number
  readonly bytes: Uint8Array
}

/** Encodes outbound tensors and decodes inbound ones, per role `R` (the roles the adapter was built for). */
export interface TensorCodecs<R extends TensorRole = TensorRole> {
  /** The codec name the run chose for `role` (for logs and status). */
  name(role: R): string
  /** The codec's declared relMaxAbs for `role` (0 for lossless). */
  relError(role: R): number
  /** Checks `data` is finite (NonFiniteError), then encodes it; `shape` defaults to [data.length]. */
  encode(role: R, data: Float32Array, shape?: readonly number[]): EncodedTensor
  /**
   * Encodes without the finite check: what a faulty peer would send. For fault injection only
   * (core/averaging FaultInjection); a codec that rejects NaN/Inf itself still does.
   */
  encodeUnchecked(role: R, data: Float32Array, shape?: readonly number[]): EncodedTensor
  /**
   * Decodes a frame's tensor: refuses a codec id other than the run's for `role` (CodecError:
   * UnknownCodecError, CodecNotAllowedError), checks the decoded dims and element count against the
   * header's and that every value is finite.
   */
  decode(role: R, frame: Frame): Float32Array
  /** What a receiver of `bytes` (one encoded tensor) will hold: an owner keeps exactly what it sends. */
  decodeBytes(role: R, codecId: number, bytes: Uint8Array): Float32Array
}

/** The adapter the pipeline node and the compressed chain use (name, encode, decode of boundary tensors). */
export type BoundaryCodecs = Pick<TensorCodecs<BoundaryRole>, 'name' | 'encode' | 'decode'>

/** Codecs for the roles `choices` names (role -> codec name); `codecs` are the registered plugin codecs. */
export function tensorCodecs<R extends TensorRole> (choices: Readonly<Record<R, string>>, codecs: Iterable<Codec> = []): TensorCodecs<R> {
  const set = new CodecSet(codecs, choices as Readonly<Partial<Record<TensorRole, string>>>)
  const encode = (role: R, data: Float32Array, shape: readonly number[] = [data.length]): EncodedTensor => set.encode(role, data, shape)
  return {
    name: role => choices[role],
    relError: role => set.forRole(role).errorBound.relMaxAbs,
    encode (role, data, shape) {
      assertFiniteF32(data, `outbound ${role}`)
      return encode(role, data, shape)
    },
    encodeUnchecked: encode,
    decode (role, frame) {
      const h = frame.header
      if (h.dtype !== 'f32') throw new CodecError(`${role} frames carry f32 tensors, got dtype ${h.dtype}`)
      const codec = set.accept(role, h.codecId)
      const d = codec.decode(frame.payload)
      // the codec's own dims must be the frame's: [4,8,C] inside a [2,16,C] frame is a bad sender
      if (codec.shapeless !== true && (d.shape.length !== h.shape.length || d.shape.some((x, i) => x !== h.shape[i]))) {
        throw new CodecError(`decoded ${role} has shape [${d.shape.join(',')}], the frame header says [${h.shape.join(',')}]`)
      }
      const n = h.shape.reduce((a, b) => a * b, 1)
      if (d.data.length !== n) throw new CodecError(`${role} payload holds ${d.data.length} values, the header shape [${h.shape.join(',')}] says ${n}`)
      assertFiniteF32(d.data, `inbound ${role}`)
      return d.data
    },
    decodeBytes: (role, codecId, bytes) => set.decode(role, codecId, bytes).data
  }
}

/** The boundary roles of a manifest's `codecs`; `container` supplies plugin codecs (may be absent when every role is raw). */
export function boundaryCodecs (choices: Readonly<Record<BoundaryRole, string>>, container?: DependencyContainer): TensorCodecs<BoundaryRole> {
  const codecs = container != null ? CodecSet.fromContainer(container).codecs : []
  return tensorCodecs({ activation: choices.activation, 'activation-grad': choices['activation-grad'] }, codecs)
}

/** The averaging roles of a manifest's `codecs`; `codecs` are the registered plugin codecs. */
export function shardCodecs (choices: Readonly<Record<AveragingRole, string>>, codecs: Iterable<Codec> = []): TensorCodecs<AveragingRole> {
  return tensorCodecs({ parameter: choices.parameter, 'parameter-grad': choices['parameter-grad'] }, codecs)
}
