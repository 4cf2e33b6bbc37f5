// How boundary tensors (activations and their gradients) are put on the wire. The run manifest
// names a codec per role; `none` (also `raw`) means raw little-endian f32 elements, the wire
// layer's codec id 0, and needs no plugin. Any other name is looked up among the codecs plugins
// registered under Tokens.Codec (core/codec-set.ts): plugging a codec in changes nothing here.
import type { DependencyContainer } from 'tsyringe'
import type { TensorRole } from '../contracts/codec.ts'
import { CodecSet } from '../codec-set.ts'
import { CodecError } from '../errors.ts'
import { assertFiniteF32, float32View, RAW_CODEC_ID, type Frame } from '../wire/index.ts'

/** Manifest codec names that mean raw f32 elements (codec id 0). */
export const RAW_CODEC_NAMES: ReadonlySet<string> = new Set(['none', 'raw'])

/**
 * The built-in plugin that registers the codecs a manifest names (fp32, fp16, int8-block, ...): a
 * node whose run uses any codec but raw loads it (`start` adds it to the node's plugins).
 */
export const CODEC_PLUGIN = 'compression'

export type BoundaryRole = Extract<TensorRole, 'activation' | 'activation-grad'>

export interface EncodedTensor {
  readonly codecId: number
  readonly bytes: Uint8Array
}

/** Encodes outbound boundary tensors and decodes inbound ones, per role. */
export interface BoundaryCodecs {
  /** The codec name used for `role` (for logs and status). */
  name(role: BoundaryRole): string
  encode(role: BoundaryRole, data: Float32Array, shape: readonly number[]): EncodedTensor
  /**
   * Decodes a frame's tensor: refuses a codec id other than the run's for `role` (CodecError:
   * UnknownCodecError, CodecNotAllowedError), checks the decoded shape against the header's and
   * that every value is finite.
   */
  decode(role: BoundaryRole, frame: Frame): Float32Array
}

/** Codecs per role from the manifest's choice; `container` supplies plugin codecs (may be absent when every role is raw). */
export function boundaryCodecs (choices: Readonly<Record<BoundaryRole, string>>, container?: DependencyContainer): BoundaryCodecs {
  const pluginChoices: Partial<Record<BoundaryRole, string>> = {}
  for (const role of ['activation', 'activation-grad'] as const) {
    if (!RAW_CODEC_NAMES.has(choices[role])) pluginChoices[role] = choices[role]
  }
  const set = Object.keys(pluginChoices).length > 0
    ? (container != null ? CodecSet.fromContainer(container, pluginChoices) : new CodecSet([], pluginChoices))
    : undefined
  const isRaw = (role: BoundaryRole): boolean => pluginChoices[role] == null

  return {
    name: role => choices[role],
    encode (role, data, shape) {
      if (isRaw(role)) {
        // a copy: the caller's array may be reused while lower layers still hold the bytes
        return { codecId: RAW_CODEC_ID, bytes: new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)) }
      }
      const { codecId, bytes } = (set as CodecSet).encode(role, data, shape)
      return { codecId, bytes }
    },
    decode (role, frame) {
      const h = frame.header
      const n = h.shape.reduce((a, b) => a * b, 1)
      let data: Float32Array
      if (isRaw(role)) {
        if (h.codecId !== RAW_CODEC_ID) throw new CodecError(`the run sends ${role} tensors raw (codec 0), got codec id ${h.codecId}`)
        data = float32View(frame)
      } else {
        const d = (set as CodecSet).decode(role, h.codecId, frame.payload)
        // the codec's own dims must be the frame's: [4,8,C] inside a [2,16,C] frame is a bad sender
        if (d.shape.length !== h.shape.length || d.shape.some((x, i) => x !== h.shape[i])) {
          throw new CodecError(`decoded ${role} has shape [${d.shape.join(',')}], the frame header says [${h.shape.join(',')}]`)
        }
        data = d.data
      }
      if (data.length !== n) throw new CodecError(`${role} payload holds ${data.length} values, the header shape [${h.shape.join(',')}] says ${n}`)
      assertFiniteF32(data, role)
      return data
    }
  }
}
