// Stage checkpoints: each node writes the parameters (HF names) and AdamW state of its own stage
// through core/train's checkpoint writer (atomic safetensors pair), as
// `stage-<s>-step-NNNNNN.safetensors`. `mergeStageCheckpoints` joins one file per stage into a
// whole-model file (layout stage: null) that `layerswarm sample` reads.
import { join } from 'node:path'
import { mkdir } from 'node:fs/promises'
import type { ModelConfig } from '../model/config.ts'
import type { Stage } from '../model/stage.ts'
import { CheckpointMismatchError, checkpointFileName, loadCheckpoint, saveCheckpoint } from '../train/checkpoint.ts'

export function stageCheckpointName (stage: number, step: number): string {
  return `stage-${stage}-${checkpointFileName(step)}`
}

export interface StageCheckpointInfo {
  readonly config: ModelConfig
  readonly stages: number
  readonly bottleneck: number
  readonly step: number
  /** Trainer state (run id, tokens, ...), stored with the optimizer state. */
  readonly train?: Record<string, unknown>
  /** Stored in the model file (tokenizer name, run id). */
  readonly info?: Record<string, unknown>
}

/** Writes `stage`'s parameters and optimizer state into `dir`; returns the model file's path. Call with the stage idle. */
export async function saveStageCheckpoint (dir: string, stage: Stage, what: StageCheckpointInfo): Promise<string> {
  await mkdir(dir, { recursive: true })
  const s = stage.layout.range.index
  const path = join(dir, stageCheckpointName(s, what.step))
  await saveCheckpoint(path, {
    config: what.config,
    layout: { stages: what.stages, bottleneck: what.bottleneck, stage: s },
    params: await stage.params.download(),
    optimizer: await stage.optimizer.exportState(),
    train: { ...what.train, step: what.step },
    info: what.info
  })
  return path
}

/** Joins one checkpoint per stage (any order) into a whole-model file at `out` (no optimizer state). */
export async function mergeStageCheckpoints (files: readonly string[], out: string): Promise<string> {
  const parts = await Promise.all(files.map(async f => await loadCheckpoint(f, { optimizer: false })))
  if (parts.length === 0) throw new CheckpointMismatchError('no stage checkpoints to merge')
  const first = parts[0]
  const S = first.layout.stages
  const byStage = new Map<number, typeof first>()
  for (const p of parts) {
    if (JSON.stringify(p.config) !== JSON.stringify(first.config) || p.layout.stages !== S || p.layout.bottleneck !== first.layout.bottleneck) {
      throw new CheckpointMismatchError('stage checkpoints come from different models or splits')
    }
    if (p.layout.stage == null) throw new CheckpointMismatchError('a whole-model checkpoint is not a stage checkpoint')
    if (byStage.has(p.layout.stage)) throw new CheckpointMismatchError(`two checkpoints for stage ${p.layout.stage}`)
    byStage.set(p.layout.stage, p)
  }
  for (let s = 0; s < S; s++) if (!byStage.has(s)) throw new CheckpointMismatchError(`no checkpoint for stage ${s} of ${S}`)
  const params = new Map<string, Float32Array>()
  for (const p of parts) for (const [k, v] of p.params) params.set(k, v)
  await saveCheckpoint(out, {
    config: first.config,
    layout: { stages: S, bottleneck: first.layout.bottleneck, stage: null },
    params,
    info: first.info
  })
  return out
}
