// MembershipInit from a node's NodeConfig.runtime (what `start` passes: run id, stage count, and the
// optional `membership` object {intervalMs, ttlMs, maxSkewMs, invalidMessageWeight}), so whatever
// creates a training node's membership reads its settings in one way. ConfigError names a bad value.
import { ConfigError } from '../errors.ts'
import type { Logger } from '../contracts/logger.ts'
import type { MembershipInit } from './membership-service.ts'
import { MAX_STAGES } from './heartbeat.ts'

const NUMBERS = ['intervalMs', 'ttlMs', 'maxSkewMs', 'invalidMessageWeight'] as const

/** The membership settings of a training node; undefined for a node without a run (no run id or stage count). */
export function membershipInit (runtime: Readonly<Record<string, unknown>>, log?: Logger): MembershipInit | undefined {
  const { runId } = runtime
  const stages = typeof runtime.stages === 'string' && /^\d+$/.test(runtime.stages.trim()) ? Number(runtime.stages) : runtime.stages
  if (runId == null || stages == null) return undefined
  if (typeof runId !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(runId)) throw new ConfigError('runtime.runId must be 1-64 of [A-Za-z0-9._-]')
  if (typeof stages !== 'number' || !Number.isSafeInteger(stages) || stages < 1 || stages > MAX_STAGES) {
    throw new ConfigError(`runtime.stages must be an integer in [1, ${MAX_STAGES}]`)
  }
  const o = runtime.membership ?? {}
  if (typeof o !== 'object' || o == null || Array.isArray(o)) throw new ConfigError('runtime.membership must be an object')
  const init: Record<string, unknown> = { runId, stages, log }
  for (const k of NUMBERS) {
    const v = (o as Record<string, unknown>)[k]
    if (v === undefined) continue
    if (typeof v !== 'number' || !Number.isFinite(v) || (k !== 'invalidMessageWeight' && v <= 0)) throw new ConfigError(`membership option ${k} must be a ${k === 'invalidMessageWeight' ? 'finite' : 'positive'} number`)
    init[k] = v
  }
  return init as unknown as MembershipInit
}
