// The validator's weight setter (core/chain/weight-setter.ts) against an in-memory chain that models
// what subtensor checks: the head, the weights rate limit, the version key, commit-reveal v2's epochs
// (a reveal only in epoch commit + period, the hash recomputed from the reveal), and an endpoint that
// goes away. Ticks are driven one at a time; the loop itself only where the test is about the loop.
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { bytesToHex } from '@noble/hashes/utils.js'
import { ChainExtrinsicError, ChainUnreachableError, WeightsTooSoonError, WeightVersionKeyError } from '../core/chain/errors.ts'
import type { ChainCallOptions, ChainReader, Metagraph, Neuron, SubnetWeightRules, WeightsWriter } from '../core/chain/types.ts'
import { WeightSetter, epochOf, padToMinAllowed, type WeightSetterInit } from '../core/chain/weight-setter.ts'
import { commitHash } from '../core/chain/weights-commit.ts'
import { uniformStageCost } from '../core/chain/weights.ts'
import type { LedgerStatus, PeerLedger } from '../core/verify/work-ledger.ts'

const VALIDATOR = '5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY'
const NETUID = 1

class FakeChain implements ChainReader, WeightsWriter {
  readonly hotkey = VALIDATOR
  block = 100
  rules: SubnetWeightRules = { tempo: 10, versionKey: 1n, rateLimit: 5, commitReveal: false, revealPeriodEpochs: 1, minAllowedWeights: 1, maxWeightLimit: 65535, minStake: 0n }
  /** The runtime's reveal period (weightRules may report another, as a runtime without the setting does). */
  revealPeriod = 1
  unreachable = false
  /** head() waits until its signal aborts. */
  hang = false
  lastUpdate = 0
  ruleReads = 0
  commits: Array<{ hash: string, block: number }> = []
  sets: Array<{ uids: number[], weights: number[], versionKey: bigint, block: number }> = []
  rejected: string[] = []

  async head (o?: ChainCallOptions): Promise<number> {
    if (this.hang) await new Promise((_resolve, reject) => o?.signal?.addEventListener('abort', () => reject(o.signal?.reason)))
    this.reach()
    return this.block
  }

  async subnetExists (netuid: number): Promise<boolean> { return netuid === NETUID }
  async weightRules (): Promise<SubnetWeightRules> { this.reach(); this.ruleReads++; return this.rules }

  async metagraph (): Promise<Metagraph> {
    this.reach()
    const n = (uid: number, hotkey: string): Neuron => ({
      uid, hotkey, coldkey: 'c', stake: 0n, trust: 0, incentive: 0, dividends: 0, emission: 0n, validatorPermit: hotkey === VALIDATOR,
      lastUpdate: hotkey === VALIDATOR ? this.lastUpdate : 0, axon: null
    })
    return { netuid: NETUID, block: this.block, neurons: [n(0, VALIDATOR), n(1, 'h1'), n(2, 'h2'), n(3, 'h3')] }
  }

  async setWeights (_netuid: number, uids: readonly number[], weights: readonly number[], versionKey: bigint): Promise<void> {
    this.include()
    if (this.rules.commitReveal) this.fail(new ChainExtrinsicError('SubtensorModule.CommitRevealEnabled'))
    this.apply(uids, weights, versionKey, true)
  }

  async commitWeights (_netuid: number, hash: Uint8Array): Promise<void> {
    this.include()
    if (!this.rules.commitReveal) this.fail(new ChainExtrinsicError('SubtensorModule.CommitRevealDisabled'))
    if (!this.rateOk()) this.fail(new WeightsTooSoonError('SubtensorModule.CommittingWeightsTooFast'))
    this.commits = this.commits.filter(c => !this.expired(c.block))
    if (this.commits.length >= 10) this.fail(new ChainExtrinsicError('SubtensorModule.TooManyUnrevealedCommits'))
    this.commits.push({ hash: bytesToHex(hash), block: this.block })
    this.lastUpdate = this.block
  }

  async revealWeights (netuid: number, uids: readonly number[], weights: readonly number[], salt: readonly number[], versionKey: bigint): Promise<void> {
    this.include()
    const hash = bytesToHex(commitHash({ hotkey: this.hotkey, netuid, uids, weights, salt, versionKey }))
    this.commits = this.commits.filter(c => !this.expired(c.block))
    const i = this.commits.findIndex(c => c.hash === hash)
    if (i < 0) this.fail(new ChainExtrinsicError(this.commits.length === 0 ? 'SubtensorModule.NoWeightsCommitFound' : 'SubtensorModule.InvalidRevealCommitHashNotMatch'))
    if (this.epoch(this.block) !== this.epoch(this.commits[i].block) + this.revealPeriod) this.fail(new WeightsTooSoonError('SubtensorModule.RevealTooEarly'))
    this.commits.splice(0, i + 1)
    this.apply(uids, weights, versionKey, false)
  }

  advance (blocks: number): void { this.block += blocks }
  epoch (block: number): number { return epochOf(block, NETUID, this.rules.tempo) }
  /** First block of the epoch after `block`'s. */
  nextEpochStart (block: number): number { return (this.epoch(block) + 1) * (this.rules.tempo + 1) - NETUID - 1 }

  private apply (uids: readonly number[], weights: readonly number[], versionKey: bigint, rateLimited: boolean): void {
    if (versionKey < this.rules.versionKey) this.fail(new WeightVersionKeyError())
    if (rateLimited && !this.rateOk()) this.fail(new WeightsTooSoonError('SubtensorModule.SettingWeightsTooFast'))
    this.sets.push({ uids: [...uids], weights: [...weights], versionKey, block: this.block })
    if (rateLimited) this.lastUpdate = this.block
  }

  private rateOk (): boolean { return this.lastUpdate === 0 || this.block - this.lastUpdate >= this.rules.rateLimit }
  private expired (commitBlock: number): boolean { return this.epoch(this.block) > this.epoch(commitBlock) + this.revealPeriod }
  /** An extrinsic goes into the next block. */
  private include (): void { this.reach(); this.block++ }
  private reach (): void { if (this.unreachable) throw new ChainUnreachableError('ws://fake') }
  private fail (err: Error): never { this.rejected.push(err.message); throw err }
}

function peer (tokens: number, passed = 2): PeerLedger {
  return { work: { 0: { forward: { microbatches: 1, tokens } } }, checks: { own: { passed, failed: 0, withheld: 0 }, accusation: { passed: 0, failed: 0, withheld: 0 } }, accusations: { upheld: 0, false: 0 }, copies: 0, convicted: false, last: 0 }
}

const LEDGER: LedgerStatus = { peers: { p1: peer(2000), p2: peer(1000) }, totals: { microbatches: 2, tokens: 3000, checks: { passed: 4, failed: 0, withheld: 0 }, copies: 0, convicted: 0 } }

function setter (chain: FakeChain, extra: Partial<WeightSetterInit> = {}): WeightSetter {
  return new WeightSetter({
    reader: chain, writer: chain, netuid: NETUID, ledger: () => LEDGER, hotkeyOf: p => ({ p1: 'h1', p2: 'h2' } as Record<string, string>)[p],
    stageCost: uniformStageCost, intervalMs: 10, ...extra
  })
}

/** Polls `cond` every 10 ms, at most `ms`. */
async function until (cond: () => boolean, ms = 10_000): Promise<void> {
  for (let waited = 0; !cond(); waited += 10) {
    if (waited > ms) throw new Error('condition not met in time')
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

describe('chain weight setter', () => {
  let dir: string
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'ls-weight-setter-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('sets the ledger\'s weights, then waits out the rate limit (the chain never refuses one)', async () => {
    const chain = new FakeChain()
    const s = setter(chain)
    assert.deepEqual(await s.tick(), ['set'])
    assert.deepEqual(chain.sets, [{ uids: [1, 2], weights: [65535, 32768], versionKey: 1n, block: 101 }])
    chain.advance(2)
    assert.deepEqual(await s.tick(), ['skip:rate-limit'])
    chain.advance(2)
    assert.deepEqual(await s.tick(), ['skip:rate-limit'], 'the metagraph\'s lastUpdate says 101: 105 - 101 < 5')
    chain.advance(2)
    assert.deepEqual(await s.tick(), ['set'])
    assert.equal(chain.sets.length, 2)
    assert.deepEqual(chain.rejected, [])
    const st = s.status()
    assert.equal(st.lastSet?.block, 108)
    assert.deepEqual(st.lastWeights, { uids: [1, 2], weights: [65535, 32768], block: 108 })
    assert.deepEqual(st.errors, {})
    assert.equal(st.explain?.length, 2)
    JSON.stringify(st, (_k, v) => typeof v === 'bigint' ? String(v) : v)
  })

  it('an empty ledger sets nothing; an unregistered hotkey or one without a validator permit skips', async () => {
    const chain = new FakeChain()
    const empty: LedgerStatus = { peers: {}, totals: LEDGER.totals }
    assert.deepEqual(await setter(chain, { ledger: () => empty }).tick(), ['skip:no-weights'])
    const noSelf = async (): Promise<Metagraph> => ({ ...(await chain.metagraph()), neurons: (await chain.metagraph()).neurons.filter(n => n.uid !== 0) })
    assert.deepEqual(await setter(chain, { metagraph: undefined, reader: Object.assign(Object.create(chain) as FakeChain, { metagraph: noSelf }) }).tick(), ['skip:not-registered'])
    const mg = await chain.metagraph()
    const noPermit: Metagraph = { ...mg, neurons: mg.neurons.map(n => ({ ...n, validatorPermit: false })) }
    assert.deepEqual(await setter(chain, { metagraph: () => noPermit }).tick(), ['skip:no-validator-permit'])
    assert.equal(chain.sets.length + chain.commits.length, 0)
    assert.equal(setter(chain).status().lastSkip, undefined)
  })

  it('pads to the subnet\'s minimum with zero weights, lowest other uids first, its own uid last', async () => {
    assert.deepEqual(padToMinAllowed([3], [65535], [0, 1, 2, 3], 3, 0), { uids: [1, 2, 3], weights: [0, 0, 65535] })
    assert.deepEqual(padToMinAllowed([3], [65535], [0, 1, 2, 3], 9, 1), { uids: [0, 1, 2, 3], weights: [0, 0, 0, 65535] })
    assert.deepEqual(padToMinAllowed([1, 2], [5, 6], [0, 1, 2], 1, 0), { uids: [1, 2], weights: [5, 6] })
    const chain = new FakeChain()
    chain.rules = { ...chain.rules, minAllowedWeights: 3 }
    assert.deepEqual(await setter(chain).tick(), ['set'])
    assert.deepEqual(chain.sets[0].uids, [1, 2, 3])
    assert.deepEqual(chain.sets[0].weights, [65535, 32768, 0])
  })

  it('a version key the subnet moved on from: rules read again once, the set retried with the new key', async () => {
    const chain = new FakeChain()
    const s = setter(chain)
    assert.deepEqual(await s.tick(), ['set'])
    chain.rules = { ...chain.rules, versionKey: 9n }
    chain.advance(5)
    assert.equal(chain.ruleReads, 1, 'rules cached within a tempo')
    assert.deepEqual(await s.tick(), ['set'])
    assert.equal(chain.ruleReads, 2)
    assert.equal(chain.sets.at(-1)?.versionKey, 9n)
    assert.deepEqual(s.status().errors, { ERR_CHAIN_WEIGHT_VERSION_KEY: 1 })
  })

  it('commit-reveal: commits, reveals in the commit\'s epoch + period with the same weights, never two commits pending', async () => {
    const chain = new FakeChain()
    chain.rules = { ...chain.rules, commitReveal: true }
    const s = setter(chain)
    assert.deepEqual(await s.tick(), ['committed'])
    assert.equal(chain.commits.length, 1)
    const commitBlock = chain.commits[0].block
    assert.equal(s.status().pending?.revealEpoch, chain.epoch(commitBlock) + 1)
    chain.advance(chain.nextEpochStart(commitBlock) - chain.block - 2)
    for (let i = 0; i < 2; i++) {
      assert.deepEqual(await s.tick(), ['skip:reveal-epoch'])
      assert.equal(chain.commits.length, 1, 'no second commit while one is pending, rate limit or not')
    }
    chain.advance(1) // the reveal lands in the reveal epoch's first block
    assert.deepEqual(await s.tick(), ['revealed', 'committed'])
    assert.equal(chain.sets.length, 1)
    assert.deepEqual(chain.sets[0].uids, [1, 2])
    assert.deepEqual(chain.sets[0].weights, [65535, 32768])
    assert.equal(chain.epoch(chain.sets[0].block), chain.epoch(commitBlock) + 1)
    assert.equal(chain.commits.length, 1, 'the next commit')
    assert.deepEqual(chain.rejected, [])
    assert.equal(s.status().lastReveal?.block, chain.sets[0].block)
  })

  it('RevealTooEarly (the runtime\'s reveal period longer than the rules say): waits, reveals in the next epoch', async () => {
    const chain = new FakeChain()
    chain.rules = { ...chain.rules, commitReveal: true, rateLimit: 100 }
    chain.revealPeriod = 2
    const s = setter(chain)
    assert.deepEqual(await s.tick(), ['committed'])
    const commitBlock = chain.commits[0].block
    chain.advance(chain.nextEpochStart(commitBlock) - chain.block)
    assert.deepEqual(await s.tick(), ['skip:reveal-too-early'])
    assert.deepEqual(await s.tick(), ['skip:reveal-too-early'])
    assert.equal(chain.sets.length, 0)
    chain.advance(chain.nextEpochStart(chain.block) - chain.block)
    assert.deepEqual(await s.tick(), ['revealed', 'skip:rate-limit'])
    assert.equal(chain.sets.length, 1)
    assert.equal(s.status().errors.ERR_CHAIN_EXTRINSIC, 2)
    assert.equal(s.status().droppedCommits, 0)
  })

  it('a commit the chain calls expired is dropped, and the next one made', async () => {
    const chain = new FakeChain()
    chain.rules = { ...chain.rules, commitReveal: true }
    const s = setter(chain)
    await s.tick()
    chain.revealPeriod = 0 // the runtime now expires it before its reveal epoch
    chain.advance(chain.nextEpochStart(chain.block) - chain.block)
    assert.deepEqual(await s.tick(), ['error:ERR_CHAIN_EXTRINSIC', 'committed'])
    assert.equal(s.status().droppedCommits, 1)
    assert.equal(chain.commits.length, 1)
  })

  it('a pending commit survives a restart (0600 file) and is revealed by the next setter', async () => {
    const chain = new FakeChain()
    chain.rules = { ...chain.rules, commitReveal: true }
    const pendingPath = join(dir, 'pending-commit.json')
    const a = setter(chain, { pendingPath })
    await a.start()
    await until(() => chain.commits.length === 1)
    await a.stop()
    assert.equal((await stat(pendingPath)).mode & 0o777, 0o600)
    assert.match(await readFile(pendingPath, 'utf8'), /"salt"/)
    chain.advance(chain.nextEpochStart(chain.commits[0].block) - chain.block)
    const b = setter(chain, { pendingPath, intervalMs: 60_000 })
    await b.start()
    await until(() => chain.sets.length === 1)
    await b.stop()
    assert.deepEqual(chain.sets[0].weights, [65535, 32768])
    await until(() => b.status().pending != null) // the new commit made after the reveal
    assert.notEqual(b.status().lastReveal, undefined)
  })

  it('an unreachable chain keeps the loop alive (errors counted), and weights are set when it returns', async () => {
    const chain = new FakeChain()
    chain.unreachable = true
    const s = setter(chain)
    await s.start()
    try {
      await until(() => (s.status().errors.ERR_CHAIN_UNREACHABLE ?? 0) >= 3)
      assert.equal(chain.sets.length, 0)
      chain.unreachable = false
      await until(() => chain.sets.length === 1)
    } finally {
      await s.stop()
    }
    assert.equal(s.status().lastSet?.block, chain.sets[0].block)
  })

  it('stop() ends the loop promptly, also while a chain call is in flight', async () => {
    const chain = new FakeChain()
    const s = setter(chain, { intervalMs: 3_600_000 })
    await s.start()
    await until(() => chain.sets.length === 1) // first tick done; now in a one-hour pause
    await s.stop()
    chain.hang = true
    const t = setter(chain, { intervalMs: 3_600_000 })
    await t.start()
    await until(() => t.status().ticks === 1) // inside head(), which waits for its signal
    await t.stop()
    assert.equal(t.status().lastSet, undefined)
    assert.deepEqual(t.status().errors, {}, 'an aborted tick is not an error')
  })
})
