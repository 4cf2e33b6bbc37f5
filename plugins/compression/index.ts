// Plugin entry: binds every built-in codec under the multi token Tokens.Codec. Options (config
// `plugins.compression`): int8BlockSize, int4BlockSize, topkFraction. Codec table, bounds and
// policies: docs/compression.md.
import { definePlugin, Tokens } from '../../core/contracts/index.ts'
import { builtinCodecs, parseCompressionOptions } from './registry.ts'

export { fp32Codec, fp16Codec, bf16Codec } from './float.ts'
export type { FloatCodecOptions } from './float.ts'
export { int8BlockCodec, int4BlockCodec } from './blockwise.ts'
export type { BlockCodec, BlockCodecOptions } from './blockwise.ts'
export { topkCodec, compose } from './topk.ts'
export type { TopKCodec, TopKOptions, ComposableCodec } from './topk.ts'
export { ErrorFeedback } from './error-feedback.ts'
export { codecKernels } from './kernels.ts'
export type { CodecPath } from './kernels.ts'
export { builtinCodecs, parseCompressionOptions } from './registry.ts'
export type { CompressionOptions } from './registry.ts'
export { CodecIds, FIRST_USER_CODEC_ID, builtinHeaderLength } from './ids.ts'
export { MAX_RANK, DEFAULT_MAX_ELEMENTS } from './header.ts'

export default definePlugin({
  name: 'compression',
  kind: 'codec',
  description: 'Built-in codecs: fp32, fp16, bf16, int8-block, int4-block, topk (+ fp16 / int8 values)',
  provides: [Tokens.Codec],
  register (ctx) {
    const codecs = builtinCodecs(parseCompressionOptions(ctx.options))
    for (const codec of codecs) ctx.container.registerInstance(Tokens.Codec, codec)
    ctx.logger.debug('codecs registered', { codecs: codecs.map(c => `${c.name}#${c.id}`).join(', ') })
  }
})
