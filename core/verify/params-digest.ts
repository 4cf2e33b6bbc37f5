// A digest of a stage's parameters that every peer holding bit-identical weights reproduces, and
// that changes with any bit of any value, any shape, or any name. It is what a hop commitment
// names as "the weights used", what a checker compares with the weights a peer reveals, and what
// a joiner asks a majority of the stage to agree on.
//
// Canonical stream fed to SHA-256 (digest.ts), tensors in NAME order (UTF-16 code-unit order, the
// same on every platform; not the layout order, so a digest does not depend on how a caller lists
// them), every integer a u32 little-endian:
//   "layerswarm/params/v1" 0x00 | count | per tensor: nameBytes, name (UTF-8), rank, dims..., the
//   float32 elements' bits, little-endian
// The bits are hashed as they are: -0 and +0 differ, every NaN payload is its own value. That is
// "bit-identical", which is what peers holding the same averaged state have.
//
// Parameters live either as a Map name -> Float32Array (ParameterSet.download()) or as one flat
// vector in stageParamSpecs order (what averaging moves); both give the same digest for the same
// values. Shapes come from the layout (the specs), never from the data.
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js'
import { hashChunksAsync, leBytes, sha256Chunks, u32le } from './digest.ts'
import { ParamsLayoutError } from './errors.ts'

const DOMAIN = utf8ToBytes('layerswarm/params/v1\0')

/** The part of a ParamSpec (core/model/params.ts) a digest needs. */
export interface ParamShape {
  readonly name: string
  readonly shape: readonly number[]
}

/** Digest (64 hex chars) of named parameters; `specs` gives every name and shape, and nothing else may be present. */
export function paramsDigest (values: ReadonlyMap<string, Float32Array>, specs: readonly ParamShape[]): string {
  checkNames(values, specs)
  return digestOf(specs, s => tensorFrom(values, s))
}

/** Digest of a flat vector holding the tensors of `specs` back to back in specs order (stage-averaging's flatten). */
export function flatParamsDigest (flat: Float32Array, specs: readonly ParamShape[]): string {
  const offsets = new Map<string, number>()
  let o = 0
  for (const s of specs) {
    offsets.set(s.name, o)
    o += numel(s)
  }
  if (o !== flat.length) throw new ParamsLayoutError(`flat parameters hold ${flat.length} values, the layout ${o}`)
  return digestOf(specs, s => {
    const start = offsets.get(s.name) as number
    return flat.subarray(start, start + numel(s))
  })
}

/** paramsDigest through WebCrypto where present (digest.ts): the same digest, ~7x faster; for the hot path. */
export async function paramsDigestAsync (values: ReadonlyMap<string, Float32Array>, specs: readonly ParamShape[]): Promise<string> {
  checkNames(values, specs)
  return bytesToHex(await hashChunksAsync(canonicalChunks(specs, s => tensorFrom(values, s))))
}

/** Digest of a stage's current parameters (downloads them from its backend). */
export async function stageParamsDigest (params: { readonly specs: readonly ParamShape[], download: () => Promise<Map<string, Float32Array>> }): Promise<string> {
  return await paramsDigestAsync(await params.download(), params.specs)
}

function checkNames (values: ReadonlyMap<string, Float32Array>, specs: readonly ParamShape[]): void {
  const names = new Set(specs.map(s => s.name))
  for (const name of values.keys()) {
    if (!names.has(name)) throw new ParamsLayoutError(`parameter ${name} is not in the stage's layout`)
  }
}

function tensorFrom (values: ReadonlyMap<string, Float32Array>, s: ParamShape): Float32Array {
  const v = values.get(s.name)
  if (v == null) throw new ParamsLayoutError(`missing parameter ${s.name}`)
  return v
}

function digestOf (specs: readonly ParamShape[], tensor: (s: ParamShape) => Float32Array): string {
  return bytesToHex(sha256Chunks(canonicalChunks(specs, tensor)))
}

/** The canonical stream (see the top of the file) as chunks: views of the tensors, no copies. */
function canonicalChunks (specs: readonly ParamShape[], tensor: (s: ParamShape) => Float32Array): Uint8Array[] {
  const sorted = [...specs].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].name === sorted[i - 1].name) throw new ParamsLayoutError(`parameter ${sorted[i].name} appears twice in the layout`)
  }
  const out: Uint8Array[] = [DOMAIN, u32le(sorted.length)]
  for (const s of sorted) {
    const v = tensor(s)
    if (!(v instanceof Float32Array)) throw new ParamsLayoutError(`parameter ${s.name} must be a Float32Array`)
    if (v.length !== numel(s)) throw new ParamsLayoutError(`parameter ${s.name}: expected ${numel(s)} values, got ${v.length}`)
    const name = utf8ToBytes(s.name)
    out.push(u32le(name.length), name, u32le(s.shape.length), ...s.shape.map(d => u32le(d)), leBytes(v))
  }
  return out
}

function numel (s: ParamShape): number {
  let n = 1
  for (const d of s.shape) {
    if (!Number.isSafeInteger(d) || d < 0 || d > 0xffffffff) throw new ParamsLayoutError(`parameter ${s.name}: bad dimension ${d}`)
    n *= d
  }
  return n
}
