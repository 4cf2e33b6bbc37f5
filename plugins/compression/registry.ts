// The built-in codec set, built from plugin options. Each codec is an independent instance; the
// node collects them (with any third-party codecs) through Tokens.Codec into a CodecSet.
import { ConfigError } from '../../core/contracts/index.ts'
import type { Codec } from '../../core/contracts/codec.ts'
import { bf16Codec, fp16Codec, fp32Codec } from './float.ts'
import { int4BlockCodec, int8BlockCodec } from './blockwise.ts'
import { topkCodec } from './topk.ts'
import type { CodecPath } from './kernels.ts'

export interface CompressionOptions {
  /** Block size of int8-block (default 64). */
  readonly int8BlockSize?: number
  /** Block size of int4-block (default 64, even). */
  readonly int4BlockSize?: number
  /** Fraction of elements topk keeps (default 1/64). */
  readonly topkFraction?: number
  /** 'auto' (default): WASM SIMD where present; 'js': the JS path (same bytes; for benchmarks and tests, not a config option). */
  readonly path?: CodecPath
}

/** Checks untyped plugin options (config file / flags); throws ConfigError naming the bad one. */
export function parseCompressionOptions (raw: Readonly<Record<string, unknown>>): CompressionOptions {
  const known = ['int8BlockSize', 'int4BlockSize', 'topkFraction']
  for (const k of Object.keys(raw)) if (!known.includes(k)) throw new ConfigError(`compression plugin: unknown option "${k}" (known: ${known.join(', ')})`)
  const num = (k: string): number | undefined => {
    const v = raw[k]
    if (v === undefined) return undefined
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(`compression plugin: option "${k}" must be a number, got ${JSON.stringify(v)}`)
    return v
  }
  return { int8BlockSize: num('int8BlockSize'), int4BlockSize: num('int4BlockSize'), topkFraction: num('topkFraction') }
}

/** fp32, fp16, bf16, int8-block, int4-block, topk, topk.fp16, topk.int8-block. */
export function builtinCodecs (opts: CompressionOptions = {}): Codec[] {
  try {
    const path = opts.path
    const fp16 = fp16Codec({ path })
    const int8 = int8BlockCodec({ blockSize: opts.int8BlockSize, path })
    const topk = topkCodec({ fraction: opts.topkFraction, path })
    return [fp32Codec(), fp16, bf16Codec({ path }), int8, int4BlockCodec({ blockSize: opts.int4BlockSize }), topk, topk.compose(fp16), topk.compose(int8)]
  } catch (err) {
    if (err instanceof RangeError) throw new ConfigError(`compression plugin: ${err.message}`)
    throw err
  }
}
