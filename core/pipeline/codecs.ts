// The pipeline's names for the tensor codecs adapter, kept for the files that import them from here
// (the pipeline node, the CLI, benches and tests). The adapter itself, one for every role, lives in
// core/codecs/tensor-codecs.ts; the raw codec in core/codecs/raw.ts.
export {
  boundaryCodecs, CODEC_PLUGIN, type BoundaryCodecs, type BoundaryRole, type EncodedTensor
} from '../codecs/tensor-codecs.ts'
export { RAW_CODEC_NAMES } from '../codecs/raw.ts'
