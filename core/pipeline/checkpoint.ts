// Stage checkpoints: each node writes the parameters (HF names) and AdamW state of its own stage
// through core/train's checkpoint writer (atomic safetensors pair), as
// `stage-<s>-step-NNNNNN.safetensors`. core/train/merge-checkpoints.ts joins one file per stage into
// a whole-model file (layout stage: null) that `layerswarm sample` reads.
import { join } from 'node:path'
import { mkdir } from 'node:fs/promises'
import type { ModelConfig } from '../model/config.ts'
import type { Stage } from '../model/stage.ts'
import { checkpointFileName, saveCheckpoint } from '../train/checkpoint.ts'

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
