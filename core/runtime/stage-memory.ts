// A run's stage memory estimates (core/model/memory-estimate.ts) at its manifest's shapes, the
// node's budget check (`--max-memory`), and the memory part of `status --json`: the estimate of the
// stage served beside the process's real peak (RSS high-water mark: getrusage's ru_maxrss, which is
// /proc/self/status VmHWM on Linux).
import { validateModelConfig } from '../model/config.ts'
import { checkStageFits, estimateStageMemory, stageMemoryTotals, type StageMemoryEstimate } from '../model/memory-estimate.ts'
import { stageLayouts } from '../model/stage-split.ts'
import type { RunManifest } from '../run/manifest.ts'

/** The memory fields of a training node's status (bytes). */
export interface MemoryStatus {
  /** --max-memory; null: no budget. */
  readonly budget: number | null
  /** Estimated total of the stage served (null: none served). */
  readonly estimate: number | null
  /** Estimated total of every stage of the run. */
  readonly stages: readonly number[]
  /** The process's resident set now and its high-water mark. */
  readonly rss: number
  readonly peakRss: number
}

/** The estimate of stage `stage` of the run (its even split, batch and sequence length). */
export function stageEstimate (m: RunManifest, stage: number): StageMemoryEstimate {
  const config = validateModelConfig(m.model)
  return estimateStageMemory(config, stageLayouts(config, m.stages.count, m.bottleneck ?? 0)[stage], { batch: m.data.batchSize, seqLen: m.data.seqLen })
}

/** Estimated totals of every stage: what the scheduler compares with each node's budget. */
export function runStageMemory (m: RunManifest): number[] {
  return stageMemoryTotals(validateModelConfig(m.model), m.stages.count, m.bottleneck ?? 0, { batch: m.data.batchSize, seqLen: m.data.seqLen })
}

/** Throws StageMemoryError (a ConfigError) when `stage` does not fit `budget` bytes; no budget: fits. */
export function checkStageBudget (m: RunManifest, stage: number, budget: number | undefined): void {
  if (budget != null) checkStageFits(stageEstimate(m, stage), stage, budget)
}

export function memoryStatus (m: RunManifest, stage: number | null, budget: number | undefined): MemoryStatus {
  const stages = runStageMemory(m)
  return {
    budget: budget ?? null,
    estimate: stage != null && stage >= 0 && stage < stages.length ? stages[stage] : null,
    stages,
    rss: process.memoryUsage.rss(),
    peakRss: process.resourceUsage().maxRSS * 1024
  }
}
