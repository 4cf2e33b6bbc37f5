// The validator's weight setter: every `intervalMs` it turns the work ledger into weights
// (weights.ts) and puts them on chain when the subnet allows. The chain is never on the training
// path: every error is logged and counted, none leaves the loop, and a tick that cannot act skips.
//
// One tick:
//   1. head, the subnet's weight rules (re-read once per tempo, or at once after a version-key
//      error), the metagraph (the node's fresh copy, else read), this hotkey's uid
//   2. with commit-reveal, a pending commit is revealed in the one epoch the runtime accepts it
//      (commit epoch + revealPeriodEpochs, epochs counted as subtensor does: (block + netuid + 1) /
//      (tempo + 1)); RevealTooEarly waits for the next tick, a commit the chain calls expired is dropped
//   3. skip unless the rate limit has passed since this hotkey's last update (the metagraph's
//      lastUpdate, or this setter's own last set/commit where the metagraph is older), the hotkey
//      has a validator permit, and some uid earns a positive weight
//   4. pad to the subnet's minimum length with zero weights (see padToMinAllowed), then
//      set_weights, or commit_weights with a fresh salt (commit-reveal); one commit is pending at a
//      time: a reveal removes every older commit on chain anyway, and each reveal sets the whole vector
//
// A pending commit is kept in memory and, where `pendingPath` is given, in a file (0600: its salt
// lets anyone reveal, i.e. read, the weights before their epoch), so a restarted node still reveals it.
import { chmod, readFile, rm } from 'node:fs/promises'
import { bytesToHex } from '@noble/hashes/utils.js'
import type { Logger } from '../contracts/logger.ts'
import { writeFileAtomic } from '../files.ts'
import { silentLogger } from '../logger.ts'
import { pause } from '../timers.ts'
import type { LedgerStatus } from '../verify/work-ledger.ts'
import { ChainExtrinsicError, WeightsInvariantError, WeightsTooSoonError, WeightVersionKeyError } from './errors.ts'
import type { ChainReader, Metagraph, SubnetWeightRules, WeightsWriter } from './types.ts'
import { ledgerToWeights, type StageCost, type WeightsResult } from './weights.ts'
import { commitHash, randomSalt } from './weights-commit.ts'

export interface WeightSetterInit {
  readonly reader: ChainReader
  readonly writer: WeightsWriter
  readonly netuid: number
  readonly ledger: () => LedgerStatus
  /** The hotkey a peer's binding verified for. */
  readonly hotkeyOf: (peerId: string) => string | undefined
  /** The node's fresh metagraph; undefined: read it from the chain. */
  readonly metagraph?: () => Metagraph | undefined
  readonly stageCost: StageCost
  /** How often to consider setting (ms). Default 12000 (about one block). */
  readonly intervalMs?: number
  /** File that keeps a pending commit across restarts (the data dir's). */
  readonly pendingPath?: string
  readonly log?: Logger
  readonly now?: () => number
}

/** A commit waiting for its reveal epoch. */
export interface PendingCommit {
  readonly netuid: number
  readonly hotkey: string
  readonly uids: number[]
  readonly weights: number[]
  readonly salt: number[]
  readonly versionKey: bigint
  /** Earliest and latest block the commit can be in (head before + 1, head after). */
  readonly commitBlock: number
  readonly commitBlockLatest: number
  readonly hash: string
}

export interface WeightSetterStatus {
  ticks: number
  lastSet?: { block: number, at: number }
  lastCommit?: { block: number, at: number }
  lastReveal?: { block: number, at: number }
  lastWeights?: { uids: number[], weights: number[], block: number }
  /** The latest tick's reason for doing nothing, if it did nothing. */
  lastSkip?: string
  errors: Record<string, number>
  /** Commits dropped unrevealed (past their epoch, or refused for good). */
  droppedCommits: number
  pending?: { commitBlock: number, revealEpoch: number, uids: number }
  explain?: WeightsResult['byHotkey']
}

/** Errors whose commit can never be revealed: drop it. */
const DEAD_COMMIT = /ExpiredWeightCommit|NoWeightsCommitFound|InvalidRevealCommitHashNotMatch|CommitRevealDisabled/

/** subtensor's epoch index of a block (weights.rs get_epoch_index). */
export function epochOf (block: number, netuid: number, tempo: number): number {
  return Math.floor((block + netuid + 1) / (tempo + 1))
}

/**
 * The chain refuses fewer weights than min(neurons, minAllowedWeights) (WeightVecLengthIsLow). Where the
 * ledger earns fewer uids, the lowest other uids are added with weight 0 (no emission moves to them;
 * this hotkey's own uid last), so the vector is accepted and still says only what was earned.
 */
export function padToMinAllowed (uids: readonly number[], weights: readonly number[], allUids: readonly number[],
  minAllowed: number, selfUid: number): { uids: number[], weights: number[] } {
  const need = Math.min(minAllowed, allUids.length)
  const by = new Map(uids.map((u, i) => [u, weights[i]]))
  const fill = [...allUids].sort((a, b) => a - b).filter(u => u !== selfUid).concat([selfUid])
  for (const u of fill) { if (by.size >= need) break; if (!by.has(u)) by.set(u, 0) }
  const sorted = [...by.keys()].sort((a, b) => a - b)
  return { uids: sorted, weights: sorted.map(u => by.get(u) as number) }
}

export class WeightSetter {
  private readonly log: Logger
  private readonly now: () => number
  private readonly intervalMs: number
  private controller: AbortController | undefined
  private loop: Promise<void> | undefined
  private rules: { rules: SubnetWeightRules, block: number } | undefined
  private pending: PendingCommit | undefined
  /** Block of this setter's own last set or commit (the metagraph's lastUpdate may be older). */
  private lastUpdate = 0
  /** A tick is running (the loop's, or a caller's): another one skips. */
  private busy = false
  private readonly state: WeightSetterStatus = { ticks: 0, errors: {}, droppedCommits: 0 }

  constructor (private readonly init: WeightSetterInit) {
    this.log = (init.log ?? silentLogger).forComponent('weight-setter')
    this.now = init.now ?? Date.now
    this.intervalMs = init.intervalMs ?? 12_000
  }

  async start (): Promise<void> {
    if (this.loop != null) return
    await this.loadPending()
    const controller = this.controller = new AbortController()
    this.loop = (async () => {
      while (!controller.signal.aborted) {
        await this.tick(controller.signal)
        await pause(this.intervalMs, controller.signal)
      }
    })()
  }

  async stop (): Promise<void> {
    this.controller?.abort()
    await this.loop
    this.loop = undefined
    this.controller = undefined
  }

  status (): WeightSetterStatus {
    const s = structuredClone(this.state)
    const p = this.pending
    const tempo = this.rules?.rules.tempo
    if (p != null && tempo != null) s.pending = { commitBlock: p.commitBlock, revealEpoch: epochOf(p.commitBlock, p.netuid, tempo) + (this.rules?.rules.revealPeriodEpochs ?? 1), uids: p.uids.length }
    return s
  }

  /** One pass (see the top of this file); never throws. Returns what it did: 'set', 'committed', 'revealed' or 'skip:<reason>', 'error:<code>'. */
  async tick (signal?: AbortSignal): Promise<string[]> {
    if (this.busy) return ['skip:busy']
    this.busy = true
    this.state.ticks++
    const done: string[] = []
    try {
      await this.pass(signal, done)
    } catch (err) {
      if (signal?.aborted === true) return done
      done.push(`error:${this.count(err)}`)
      // an invariant error is this node's bug; the rest are the chain's weather
      if (err instanceof WeightsInvariantError) this.log.error('weights not computed', { error: err.message })
      else this.log.warn('weights not set', { error: (err as Error).message })
    } finally {
      this.busy = false
    }
    const skip = done.find(d => d.startsWith('skip:'))
    if (skip != null) this.state.lastSkip = skip.slice(5)
    else if (done.some(d => !d.startsWith('error:'))) delete this.state.lastSkip
    return done
  }

  private async pass (signal: AbortSignal | undefined, done: string[]): Promise<void> {
    const { netuid, reader, writer } = this.init
    const head = await reader.head({ signal })
    const rules = await this.weightRules(head, false, signal)
    const mg = this.init.metagraph?.() ?? await reader.metagraph(netuid, { signal })
    const self = mg.neurons.find(n => n.hotkey === writer.hotkey)
    if (self == null) { done.push('skip:not-registered'); return }
    if (!rules.commitReveal && this.pending != null) { this.log.info('commit-reveal is off now: the pending commit is dropped'); await this.dropPending() }
    if (rules.commitReveal && this.pending != null) {
      const r = await this.reveal(head, rules, signal)
      done.push(r)
      if (this.pending != null) return
    }
    const lastUpdate = Math.max(self.lastUpdate, this.lastUpdate)
    if (lastUpdate > 0 && head - lastUpdate < rules.rateLimit) { done.push('skip:rate-limit'); return }
    if (!self.validatorPermit) { done.push('skip:no-validator-permit'); return }
    const w = ledgerToWeights({
      ledger: this.init.ledger(), hotkeyOf: this.init.hotkeyOf, metagraph: mg, stageCost: this.init.stageCost,
      selfHotkey: writer.hotkey, maxWeightLimit: rules.maxWeightLimit
    })
    this.state.explain = w.byHotkey
    if (w.uids.length === 0) { done.push('skip:no-weights'); return }
    if (!w.maxWeightLimitMet) { done.push('skip:max-weight-limit'); this.log.info('too few uids to meet the subnet\'s max weight limit', { uids: w.uids.length, limit: rules.maxWeightLimit }); return }
    const v = padToMinAllowed(w.uids, w.weights, mg.neurons.map(n => n.uid), rules.minAllowedWeights, self.uid)
    if (rules.commitReveal) done.push(await this.commit(head, rules, v, signal))
    else done.push(await this.set(head, rules, v, signal))
  }

  private async set (head: number, rules: SubnetWeightRules, v: { uids: number[], weights: number[] }, signal?: AbortSignal): Promise<string> {
    const { netuid, writer } = this.init
    try {
      await writer.setWeights(netuid, v.uids, v.weights, rules.versionKey, { signal })
    } catch (err) {
      if (!(err instanceof WeightVersionKeyError)) throw err
      this.count(err)
      const fresh = await this.weightRules(head, true, signal)
      this.log.info('version key refreshed', { from: String(rules.versionKey), to: String(fresh.versionKey) })
      await writer.setWeights(netuid, v.uids, v.weights, fresh.versionKey, { signal })
    }
    const block = await this.headAfter(head, signal)
    this.lastUpdate = block
    this.state.lastSet = { block, at: this.now() }
    this.state.lastWeights = { ...v, block }
    this.log.info('weights set', { block, uids: v.uids.length })
    return 'set'
  }

  private async commit (head: number, rules: SubnetWeightRules, v: { uids: number[], weights: number[] }, signal?: AbortSignal): Promise<string> {
    const { netuid, writer } = this.init
    const salt = randomSalt()
    const hash = commitHash({ hotkey: writer.hotkey, netuid, uids: v.uids, weights: v.weights, salt, versionKey: rules.versionKey })
    await writer.commitWeights(netuid, hash, { signal })
    const latest = await this.headAfter(head, signal)
    this.pending = { netuid, hotkey: writer.hotkey, ...v, salt, versionKey: rules.versionKey, commitBlock: head + 1, commitBlockLatest: latest, hash: bytesToHex(hash) }
    this.lastUpdate = latest
    this.state.lastCommit = { block: latest, at: this.now() }
    await this.savePending()
    this.log.info('weights committed', { block: latest, uids: v.uids.length })
    return 'committed'
  }

  /** Reveals the pending commit in its epoch; a commit that can never be revealed is dropped. */
  private async reveal (head: number, rules: SubnetWeightRules, signal?: AbortSignal): Promise<string> {
    const p = this.pending as PendingCommit
    const { netuid, writer } = this.init
    const first = epochOf(p.commitBlock, netuid, rules.tempo) + rules.revealPeriodEpochs
    const last = epochOf(p.commitBlockLatest, netuid, rules.tempo) + rules.revealPeriodEpochs
    // the reveal lands in the next block at the earliest
    const now = epochOf(head + 1, netuid, rules.tempo)
    if (now < first) return 'skip:reveal-epoch'
    // the chain says when a commit is dead (ExpiredWeightCommit and kin, below); this bound only
    // ends retries that fail otherwise, a full reveal period after the last possible reveal epoch
    if (epochOf(head, netuid, rules.tempo) > last + rules.revealPeriodEpochs) {
      this.log.warn('a weights commit passed its reveal epoch unrevealed: dropped', { commitBlock: p.commitBlock })
      await this.dropPending()
      return 'error:commit-expired'
    }
    try {
      await writer.revealWeights(netuid, p.uids, p.weights, p.salt, p.versionKey, { signal })
    } catch (err) {
      if (err instanceof WeightsTooSoonError) { this.count(err); return 'skip:reveal-too-early' }
      const dead = err instanceof WeightVersionKeyError || (err instanceof ChainExtrinsicError && DEAD_COMMIT.test(err.errorName))
      if (!dead) throw err
      const code = this.count(err)
      if (err instanceof WeightVersionKeyError) await this.weightRules(head, true, signal)
      this.log.warn('a weights commit cannot be revealed: dropped', { error: (err as Error).message })
      await this.dropPending()
      return `error:${code}`
    }
    const block = await this.headAfter(head, signal)
    this.state.lastReveal = { block, at: this.now() }
    this.state.lastWeights = { uids: p.uids, weights: p.weights, block }
    await this.dropPending(true)
    this.log.info('weights revealed', { block, uids: p.uids.length })
    return 'revealed'
  }

  /** The rules, read again once per tempo or when `force`d. */
  private async weightRules (head: number, force: boolean, signal?: AbortSignal): Promise<SubnetWeightRules> {
    const c = this.rules
    if (!force && c != null && head - c.block < Math.max(1, c.rules.tempo)) return c.rules
    const rules = await this.init.reader.weightRules(this.init.netuid, { signal })
    this.rules = { rules, block: head }
    return rules
  }

  /** The head once an extrinsic is in; the head before + 1 where the read fails (the extrinsic is in by then). */
  private async headAfter (before: number, signal?: AbortSignal): Promise<number> {
    try {
      return Math.max(before + 1, await this.init.reader.head({ signal }))
    } catch {
      return before + 1
    }
  }

  private count (err: unknown): string {
    const code = typeof (err as { code?: unknown })?.code === 'string' ? (err as { code: string }).code : 'ERR_UNKNOWN'
    this.state.errors[code] = (this.state.errors[code] ?? 0) + 1
    return code
  }

  private async dropPending (revealed = false): Promise<void> {
    if (!revealed) this.state.droppedCommits++
    this.pending = undefined
    if (this.init.pendingPath != null) await rm(this.init.pendingPath, { force: true }).catch(() => {})
  }

  private async savePending (): Promise<void> {
    const path = this.init.pendingPath
    if (path == null || this.pending == null) return
    try {
      await writeFileAtomic(path, new TextEncoder().encode(JSON.stringify({ v: 1, ...this.pending, versionKey: String(this.pending.versionKey) })))
      await chmod(path, 0o600)
    } catch (err) {
      this.count(err)
      this.log.warn('pending weights commit not saved (a restart before its reveal loses it)', { path, error: (err as Error).message })
    }
  }

  /** A pending commit a previous run left for this hotkey and netuid. */
  private async loadPending (): Promise<void> {
    const path = this.init.pendingPath
    if (path == null) return
    let text: string
    try { text = await readFile(path, 'utf8') } catch { return }
    try {
      const j = JSON.parse(text) as Record<string, unknown>
      const u16s = (x: unknown): number[] => {
        if (!Array.isArray(x) || !x.every(n => Number.isInteger(n) && n >= 0 && n <= 0xffff)) throw new Error('not a u16 list')
        return x as number[]
      }
      const int = (x: unknown): number => { if (!Number.isSafeInteger(x) || (x as number) < 0) throw new Error('not a block'); return x as number }
      if (j.v !== 1 || j.netuid !== this.init.netuid || j.hotkey !== this.init.writer.hotkey) { this.log.info('pending weights commit is another subnet\'s or hotkey\'s: ignored', { path }); return }
      this.pending = {
        netuid: this.init.netuid, hotkey: this.init.writer.hotkey, uids: u16s(j.uids), weights: u16s(j.weights), salt: u16s(j.salt),
        versionKey: BigInt(j.versionKey as string), commitBlock: int(j.commitBlock), commitBlockLatest: int(j.commitBlockLatest), hash: String(j.hash)
      }
      this.lastUpdate = this.pending.commitBlockLatest
      this.log.info('pending weights commit restored', { commitBlock: this.pending.commitBlock })
    } catch (err) {
      this.log.warn('pending weights commit file unreadable: ignored', { path, error: (err as Error).message })
    }
  }
}
