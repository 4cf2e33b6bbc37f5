// Full-model checkpoint from stage checkpoints. Parameter names are global (HF GPT-2 names such as
// `h.3.attn.c_attn.weight`), so a whole model is the union of one file per stage. The result keeps
// the split's layout (stages, bottleneck) with `stage: null`, which `GptModel`, `layerswarm sample`
// and `loadCheckpoint` read as "every stage": a bottleneck model must run with its own split.
import { CheckpointMismatchError, loadCheckpoint, saveCheckpoint, type Checkpoint } from '../train/checkpoint.ts'

export interface MergedCheckpoint {
  readonly path: string
  readonly checkpoint: Checkpoint
  /** Parameters (values) in the merged model. */
  readonly params: number
}

/**
 * Reads one model file per stage (any order; optimizer files are not needed), checks they come from
 * one model and one split and cover every stage exactly once, and writes the whole model to `out`
 * (model file only: a merged model is for sampling and export, not for resuming a swarm).
 */
export async function mergeStageCheckpoints (stageFiles: readonly string[], out: string, info?: Record<string, unknown>): Promise<MergedCheckpoint> {
  if (stageFiles.length === 0) throw new CheckpointMismatchError('no stage checkpoints to merge')
  const loaded = await Promise.all(stageFiles.map(async f => ({ file: f, ck: await loadCheckpoint(f, { optimizer: false }) })))
  const first = loaded[0].ck
  const configJson = JSON.stringify(first.config)
  const { stages, bottleneck } = first.layout
  const byStage = new Map<number, string>()
  for (const { file, ck } of loaded) {
    if (JSON.stringify(ck.config) !== configJson) {
      throw new CheckpointMismatchError(`${file} holds another model (${JSON.stringify(ck.config)}) than ${loaded[0].file} (${configJson})`)
    }
    if (ck.layout.stage === null) throw new CheckpointMismatchError(`${file} already holds every stage; merge stage files only`)
    if (ck.layout.stages !== stages || ck.layout.bottleneck !== bottleneck) {
      throw new CheckpointMismatchError(`${file} comes from a ${ck.layout.stages}-stage split (bottleneck ${ck.layout.bottleneck}), ${loaded[0].file} from a ${stages}-stage split (bottleneck ${bottleneck})`)
    }
    const dup = byStage.get(ck.layout.stage)
    if (dup != null) throw new CheckpointMismatchError(`stage ${ck.layout.stage} is in both ${dup} and ${file}; give one file per stage`)
    byStage.set(ck.layout.stage, file)
  }
  const missing = Array.from({ length: stages }, (_, i) => i).filter(i => !byStage.has(i))
  if (missing.length > 0) throw new CheckpointMismatchError(`stage(s) ${missing.join(', ')} of ${stages} missing; a whole model needs one file per stage`)

  const params = new Map<string, Float32Array>()
  for (const { ck } of [...loaded].sort((a, b) => (a.ck.layout.stage as number) - (b.ck.layout.stage as number))) {
    for (const [name, data] of ck.params) params.set(name, data)
  }
  // the stage files' info (tokenizer name, run id) carries over; `info` adds to it
  const mergedInfo = { ...loaded.find(l => l.ck.layout.stage === 0)?.ck.info, ...info }
  const checkpoint: Checkpoint = { config: first.config, layout: { stages, bottleneck, stage: null }, params, info: mergedInfo }
  await saveCheckpoint(out, checkpoint) // checks every tensor of the layout is present with its size
  let count = 0
  for (const p of params.values()) count += p.length
  return { path: out, checkpoint, params: count }
}
