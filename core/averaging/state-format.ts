// The bytes a stage's state is served as (state sync): named float32 tensors plus a version and a
// step, in one deterministic layout, so that peers holding the same values produce the same bytes
// and therefore the same hash.
//
//   0   4  magic "LSWS"
//   4   1  format version (1)
//   5   3  zero
//   8   4  n: JSON header length (u32 LE)
//   12  n  JSON {"version": v, "step": s, "tensors": [[name, elements], ...]} (UTF-8)
//   ..     zero padding to a multiple of 4
//   ..     the tensors' float32 elements, little-endian, in the header's order
import { StateFormatError } from './errors.ts'

export interface StageState {
  /** What peers agree on: e.g. the averaging round after which this state was taken. */
  readonly version: number
  /** Optimizer steps behind this state. */
  readonly step: number
  /** Named tensors in a fixed order: parameters, outer momentum, optimizer moments, ... */
  readonly tensors: ReadonlyMap<string, Float32Array>
}

const MAGIC = [0x4c, 0x53, 0x57, 0x53]
const FORMAT_VERSION = 1
const MAX_HEADER = 1 << 24

export function serializeState (state: StageState): Uint8Array {
  const entries = [...state.tensors]
  const header = new TextEncoder().encode(JSON.stringify({ version: state.version, step: state.step, tensors: entries.map(([n, t]) => [n, t.length]) }))
  const dataStart = align4(12 + header.byteLength)
  const total = dataStart + entries.reduce((a, [, t]) => a + 4 * t.length, 0)
  const out = new Uint8Array(total)
  out.set(MAGIC, 0)
  out[4] = FORMAT_VERSION
  new DataView(out.buffer).setUint32(8, header.byteLength, true)
  out.set(header, 12)
  let o = dataStart
  const dv = new DataView(out.buffer)
  for (const [, t] of entries) {
    for (let i = 0; i < t.length; i++) dv.setFloat32(o + 4 * i, t[i], true)
    o += 4 * t.length
  }
  return out
}

export function parseState (bytes: Uint8Array): StageState {
  if (bytes.byteLength < 12) throw new StateFormatError(`state of ${bytes.byteLength} bytes is truncated`)
  for (let i = 0; i < 4; i++) if (bytes[i] !== MAGIC[i]) throw new StateFormatError('not a layerswarm state (bad magic)')
  if (bytes[4] !== FORMAT_VERSION) throw new StateFormatError(`unsupported state format ${bytes[4]}`)
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const n = dv.getUint32(8, true)
  if (n > MAX_HEADER || 12 + n > bytes.byteLength) throw new StateFormatError('state header length out of range')
  let head: { version?: unknown, step?: unknown, tensors?: unknown }
  try {
    head = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(12, 12 + n)))
  } catch {
    throw new StateFormatError('state header is not JSON')
  }
  if (!Number.isSafeInteger(head.version) || !Number.isSafeInteger(head.step) || !Array.isArray(head.tensors)) throw new StateFormatError('state header lacks version, step or tensors')
  let o = align4(12 + n)
  const tensors = new Map<string, Float32Array>()
  for (const e of head.tensors as unknown[]) {
    if (!Array.isArray(e) || typeof e[0] !== 'string' || !Number.isSafeInteger(e[1]) || e[1] < 0) throw new StateFormatError('bad tensor entry in the state header')
    const len = e[1] as number
    if (o + 4 * len > bytes.byteLength) throw new StateFormatError(`tensor ${e[0]} runs past the end of the state`)
    const t = new Float32Array(len)
    for (let i = 0; i < len; i++) t[i] = dv.getFloat32(o + 4 * i, true)
    tensors.set(e[0], t)
    o += 4 * len
  }
  if (o !== bytes.byteLength) throw new StateFormatError(`${bytes.byteLength - o} trailing bytes after the state's tensors`)
  return { version: head.version as number, step: head.step as number, tensors }
}

function align4 (n: number): number {
  return (n + 3) & ~3
}
