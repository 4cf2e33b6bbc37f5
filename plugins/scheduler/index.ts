// Plugin entry: binds a GossipScheduler (stage assignment over the membership view, docs/scheduler.md)
// as Tokens.Scheduler. Reads and writes the node's Tokens.Membership (the run's one view of the
// swarm, which createNode binds for a node whose runtime names a run).
// Options (config `plugins.scheduler`, all optional where NodeConfig.runtime supplies them):
//   runId            run id (default NodeConfig.runtime.runId)
//   stages           stage count (default NodeConfig.runtime.stages)
//   stage            pin this node (default NodeConfig.runtime.stage, i.e. `start --stage N`)
//   stageCosts, capacity, heartbeatMs, epochMs, epochJitterMs, joinListenMs, hysteresis,
//   cooldownMs, maxMovesPerEpoch: see GossipSchedulerInit
//   maxMemory, stageMemory  memory budget (bytes) and each stage's estimate (default NodeConfig.runtime's,
//                    which `start --max-memory` fills in: core/runtime/training-runtime.ts schedulerRuntime)
// The heartbeat's own settings (interval, TTL, clock skew, score weight) are the membership's:
// NodeConfig.runtime.membership (core/membership/membership-options.ts).
import { ConfigError, definePlugin, registerRelease, release, Tokens, type Membership } from '../../core/contracts/index.ts'
import { GossipScheduler, type GossipSchedulerInit } from './gossip-scheduler.ts'
import { NAT_MONITOR_TOKEN } from '../../core/node/nat-status.ts'

export { GossipScheduler, SCHEDULER_VERSION } from './gossip-scheduler.ts'
export type { GossipSchedulerInit, LoadReport, MoveHooks, SchedulerStats } from './gossip-scheduler.ts'
export * from './errors.ts'
export * from './rule.ts'

/** Where a registration keeps the release of its scheduler (in its node's container). */
const OWN = 'scheduler:release'
/** Where a registration keeps the start of a membership it made itself. */

const NUMBER_OPTIONS = ['capacity', 'heartbeatMs', 'epochMs', 'epochJitterMs', 'joinListenMs', 'hysteresis', 'cooldownMs', 'maxMovesPerEpoch'] as const

/** GossipSchedulerInit from plugin options over NodeConfig.runtime; ConfigError names the bad option. */
export function schedulerInit (options: Readonly<Record<string, unknown>>, runtime: Readonly<Record<string, unknown>> = {}): Omit<GossipSchedulerInit, 'log'> {
  const runId = options.runId ?? runtime.runId
  if (typeof runId !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(runId)) {
    throw new ConfigError('the scheduler plugin needs a run id (option plugins.scheduler.runId, or runtime.runId): 1-64 of [A-Za-z0-9._-]')
  }
  const stages = asInt(options.stages ?? runtime.stages)
  if (typeof stages !== 'number' || !Number.isSafeInteger(stages) || stages < 1 || stages > 1024) {
    throw new ConfigError('the scheduler plugin needs the stage count (option plugins.scheduler.stages, or runtime.stages): an integer in [1, 1024]')
  }
  const pin = asInt(options.stage ?? runtime.stage)
  if (pin != null && (typeof pin !== 'number' || !Number.isSafeInteger(pin) || pin < 0 || pin >= stages)) {
    throw new ConfigError(`scheduler: stage ${String(pin)} is not an integer in [0, ${stages - 1}]`)
  }
  const init: Record<string, unknown> = { runId, stages, pinnedStage: pin ?? undefined }
  for (const k of NUMBER_OPTIONS) {
    const v = options[k]
    if (v === undefined) continue
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(`scheduler option ${k} must be a finite number`)
    init[k] = v
  }
  if (options.stageCosts !== undefined) {
    const c = options.stageCosts
    if (!Array.isArray(c) || c.length !== stages || c.some(x => typeof x !== 'number' || !(x > 0) || !Number.isFinite(x))) {
      throw new ConfigError(`scheduler option stageCosts must be ${stages} positive numbers`)
    }
    init.stageCosts = c
  }
  const mem = asInt(options.maxMemory ?? runtime.maxMemory)
  if (mem != null) {
    if (typeof mem !== 'number' || !Number.isSafeInteger(mem) || mem < 1) throw new ConfigError('scheduler option maxMemory must be a positive integer of bytes')
    init.maxMemory = mem
  }
  const need = options.stageMemory ?? runtime.stageMemory
  if (need != null) {
    if (!Array.isArray(need) || need.length !== stages || need.some(x => typeof x !== 'number' || !(x > 0) || !Number.isFinite(x))) {
      throw new ConfigError(`scheduler option stageMemory must be ${stages} positive numbers of bytes`)
    }
    init.stageMemory = need
  }
  return init as unknown as Omit<GossipSchedulerInit, 'log'>
}

/** CLI flags reach NodeConfig.runtime as strings ('--stage 2'): read integer strings as numbers. */
function asInt (v: unknown): unknown {
  return typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : v
}

export default definePlugin({
  name: 'scheduler',
  kind: 'scheduler',
  version: '0.1.0',
  description: 'Stage assignment by gossipsub heartbeats: join the least-served stage, rebalance the bottleneck',
  provides: [Tokens.Scheduler],
  requires: [Tokens.Membership],
  register (ctx) {
    const config = ctx.container.isRegistered(Tokens.NodeConfig, true) ? ctx.container.resolve<{ runtime?: Readonly<Record<string, unknown>> }>(Tokens.NodeConfig) : undefined
    const runtime = config?.runtime ?? {}
    const init = schedulerInit(ctx.options, runtime)
    const membership = ctx.container.resolve<Membership>(Tokens.Membership)
    if (membership.runId !== init.runId) throw new ConfigError(`the node's membership view is of run ${membership.runId}, the scheduler's options name run ${init.runId}`)
    // a node behind NAT that only relays reach publishes a discounted throughput (rule.ts, RELAYED_CAPACITY_FACTOR)
    const nat = ctx.container.isRegistered(NAT_MONITOR_TOKEN, true) ? ctx.container.resolve<{ relayedOnly: () => boolean }>(NAT_MONITOR_TOKEN) : undefined
    const scheduler = new GossipScheduler(membership, { ...init, log: ctx.logger, ...(nat != null ? { relayedOnly: () => nat.relayedOnly() } : {}) })
    ctx.container.registerInstance(Tokens.Scheduler, scheduler)
    registerRelease(ctx, OWN, async () => { await scheduler.stop() })
  },
  async start (ctx) {
    const scheduler = ctx.container.resolve<GossipScheduler>(Tokens.Scheduler)
    await scheduler.start()
  },
  async stop (ctx) {
    await release(ctx, OWN)
  }
})
