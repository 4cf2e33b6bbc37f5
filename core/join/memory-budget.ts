// How much memory a volunteer's node may use (`layerswarm join`): a share of what the machine has
// free now, so the node never pushes the owner's own programs into swap. The budget goes to the
// node as --max-memory; the scheduler then assigns only a stage whose estimate fits it
// (docs/scheduler.md). A cgroup limit (a container) counts as the machine's size.
import { freemem, totalmem } from 'node:os'
import { formatBytes } from '../model/memory-estimate.ts'

/** Share of the available memory a joining node takes. */
export const BUDGET_FRACTION = 0.5
/** No volunteer node takes more than this by default (a stage of gpt2-124m fits in far less). */
export const BUDGET_CAP = 16 * 1024 ** 3

export interface MachineMemory {
  /** Physical memory, bytes. */
  readonly total: number
  /** Memory the OS can hand out now without swapping (MemAvailable on Linux), bytes. */
  readonly available: number
  /** The process's cgroup limit, bytes; absent where there is none. */
  readonly limit?: number
}

export interface MemoryBudget {
  /** Bytes, a whole number of MiB. */
  readonly bytes: number
  /** The same as a --max-memory value, e.g. "3072M". */
  readonly flag: string
  /** Why this much, in words. */
  readonly why: string
}

/** This machine's memory now. */
export function machineMemory (): MachineMemory {
  const total = totalmem()
  // Node 20: 0 or a huge number (2^64-ish) when the process is not constrained
  const c = (process as { constrainedMemory?: () => number | undefined }).constrainedMemory?.()
  const limit = c != null && c > 0 && c < total ? c : undefined
  return { total, available: freemem(), ...(limit != null ? { limit } : {}) }
}

/** BUDGET_FRACTION of the available memory (within a cgroup limit), at most BUDGET_CAP, in whole MiB. */
export function memoryBudget (m: MachineMemory): MemoryBudget {
  const usable = Math.min(m.available, m.limit ?? Infinity)
  const share = Math.floor(BUDGET_FRACTION * usable)
  const capped = share > BUDGET_CAP
  const mib = Math.max(1, Math.floor(Math.min(share, BUDGET_CAP) / 1024 ** 2))
  const bytes = mib * 1024 ** 2
  const of = m.limit != null && m.limit < m.available ? `the container's ${formatBytes(m.limit)} limit` : `${formatBytes(m.available)} free of ${formatBytes(m.total)}`
  const why = capped
    ? `${BUDGET_FRACTION * 100}% of ${of}, capped at ${formatBytes(BUDGET_CAP)}`
    : `${BUDGET_FRACTION * 100}% of ${of}`
  return { bytes, flag: `${mib}M`, why }
}
