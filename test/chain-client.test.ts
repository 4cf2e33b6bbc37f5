// The chain client against a real subtensor runtime (raonet.json, spec 218) in chopsticks, one chain
// in a child process for the whole file: connecting and an unreachable endpoint, a subnet, burned
// registration and its typed refusals, stake, the metagraph after epochs, serving an axon (loopback
// refused), weights with the version key, back-to-back submissions of one signer, and commit-reveal.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { createServer } from 'node:net'
import { ChainClient, connectChain } from '../core/chain/chain-client.ts'
import type { KeyringPair } from '@polkadot/keyring/types'
import { blake2AsU8a } from '@polkadot/util-crypto'
import { createDevSubnet, defaultChainSpec, setDevSubnetParams, startDevChain, type DevChain } from '../core/chain/dev-chain.ts'
import {
  AlreadyRegisteredError, ChainUnreachableError, InsufficientBalanceError, LoopbackAddressError, SubnetNotFoundError,
  WeightsTooSoonError, WeightVersionKeyError
} from '../core/chain/errors.ts'
import { devKeyFromUri, walletCryptoReady } from '../core/chain/wallet.ts'

const TAO = 1_000_000_000n
const SPEC = defaultChainSpec()

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => { resolve(port) })
    })
  })
}

describe('chain client (chopsticks on raonet.json)', function () {
  this.timeout(120_000)
  let chain: DevChain | undefined
  let client: ChainClient
  let netuid: number
  const k: Record<string, KeyringPair> = {}

  before(async function () {
    if (!existsSync(SPEC)) {
      console.log(`    skipped: ${SPEC} is absent (the chain tests need ../shared/chain/raonet.json)`)
      this.skip()
    }
    await walletCryptoReady()
    for (const name of ['ownerCold', 'ownerHot', 'minerCold', 'minerHot', 'valCold', 'valHot', 'poorCold', 'poorHot']) k[name] = devKeyFromUri(`//H2Client${name}`)
    chain = await startDevChain({ genesis: SPEC })
    client = await connectChain(chain.endpoint)
    for (const name of ['minerCold', 'valCold']) await chain.fund(k[name].address, 100_000n * TAO)
    await chain.fund(k.poorCold.address, TAO / 2n)
  })

  after(async () => {
    await client?.close()
    await chain?.stop()
  })

  it('connects and reads the head', async () => {
    assert.equal(client.connected, true)
    assert.ok(await client.head() >= 1)
    assert.equal(await client.subnetExists(1), true)
    assert.equal(await client.subnetExists(999), false)
  })

  it('an unreachable endpoint fails with ChainUnreachableError after bounded retries', async () => {
    const port = await freePort()
    await assert.rejects(connectChain(`ws://127.0.0.1:${port}`, { retries: 2, initialDelayMs: 20, maxDelayMs: 50, attemptTimeoutMs: 5000 }),
      (err: unknown) => err instanceof ChainUnreachableError && err.endpoint === `ws://127.0.0.1:${port}`)
  })

  it('creates a subnet with quick-test hyperparameters', async () => {
    netuid = await createDevSubnet(chain!, client, k.ownerCold, k.ownerHot.address)
    assert.ok(netuid >= 2)
    assert.equal(await client.subnetExists(netuid), true)
    const rules = await client.weightRules(netuid)
    assert.equal(rules.tempo, 10)
    assert.equal(rules.rateLimit, 0)
    assert.equal(rules.commitReveal, false)
    assert.equal(rules.revealPeriodEpochs, 1)
  })

  it('burned registration: a uid, then typed refusals', async () => {
    const uid = await client.burnedRegister(k.minerCold, k.minerHot.address, netuid)
    assert.equal(await client.uidOf(netuid, k.minerHot.address), uid)
    await assert.rejects(client.burnedRegister(k.minerCold, k.minerHot.address, netuid), AlreadyRegisteredError)
    await assert.rejects(client.burnedRegister(k.minerCold, k.valHot.address, 999), (err: unknown) => err instanceof SubnetNotFoundError && err.netuid === 999)
    await assert.rejects(client.burnedRegister(k.poorCold, k.poorHot.address, netuid), InsufficientBalanceError)
    await client.burnedRegister(k.valCold, k.valHot.address, netuid)
  })

  it('the runtime\'s own refusals map to the same types (no client-side check)', async () => {
    // a stake larger than the balance: SubtensorModule.NotEnoughBalanceToStake
    const stake = client.api.tx.subtensorModule.addStake(k.valHot.address, netuid, 1_000_000n * TAO)
    await assert.rejects(client.submit(stake, k.valCold, { netuid }), InsufficientBalanceError)
    // a loopback axon sent anyway: SubtensorModule.InvalidIpAddress
    const serve = client.api.tx.subtensorModule.serveAxon(netuid, 0, 0x7f000001n, 8091, 4, 0, 0, 0)
    await assert.rejects(client.submit(serve, k.minerHot, { netuid, ip: '127.0.0.1' }), LoopbackAddressError)
  })

  it('stakes, and after epochs the metagraph shows uids, stake and a validator permit', async () => {
    await client.addStake(k.valCold, k.valHot.address, netuid, 1000n * TAO)
    await chain!.newBlocks(25)
    const mg = await client.metagraph(netuid)
    assert.ok(mg.block >= 25)
    const byHot = new Map(mg.neurons.map(n => [n.hotkey, n]))
    const val = byHot.get(k.valHot.address)
    const miner = byHot.get(k.minerHot.address)
    assert.ok(val != null && miner != null, `neurons: ${mg.neurons.map(n => n.hotkey).join(',')}`)
    assert.deepEqual(mg.neurons.map(n => n.uid), [...mg.neurons.keys()])
    assert.equal(val.coldkey, k.valCold.address)
    // the dev subnet prices alpha at about 1 TAO: 1000 TAO buys a little under 1000 alpha, and the
    // epochs since have added the validator's emissions
    assert.ok(val.stake > 900n * TAO, `validator stake ${val.stake}`)
    assert.equal(val.validatorPermit, true)
    assert.equal(miner.axon, null)
  })

  it('serve_axon: loopback refused before sending, a 10.x address read back', async () => {
    for (const ip of ['127.0.0.1', '::1', '0.0.0.0', '::']) {
      await assert.rejects(client.serveAxon(k.minerHot, netuid, { ip, port: 8091 }), LoopbackAddressError)
    }
    await client.serveAxon(k.minerHot, netuid, { ip: '10.1.2.3', port: 8091 })
    const axon = (await client.metagraph(netuid)).neurons.find(n => n.hotkey === k.minerHot.address)?.axon
    assert.equal(axon?.ip, '10.1.2.3')
    assert.equal(axon?.port, 8091)
    assert.equal(axon?.ipType, 4)
    assert.equal(axon?.protocol, 0)
  })

  it('set_weights: a wrong version key is WeightVersionKeyError, the right one reads back', async () => {
    await setDevSubnetParams(chain!, netuid, { weightsVersionKey: 7 })
    assert.equal((await client.weightRules(netuid)).versionKey, 7n)
    const uids = (await client.metagraph(netuid)).neurons.map(n => n.uid)
    const w = client.writer(k.valHot)
    await assert.rejects(w.setWeights(netuid, uids, uids.map(() => 100), 6n), WeightVersionKeyError)
    await w.setWeights(netuid, uids, uids.map((_, i) => 1000 * (i + 1)), 7n)
    const valUid = (await client.uidOf(netuid, k.valHot.address))!
    const row = await client.weightsOf(netuid, valUid)
    assert.equal(row.length, uids.length)
    // stored max-normalised to u16
    assert.equal(row[row.length - 1][1], 65535)
    assert.ok(row[0][1] < row[row.length - 1][1])
  })

  it('back-to-back submissions of one signer all land (local nonces)', async () => {
    const w = client.writer(k.valHot)
    const uids = (await client.metagraph(netuid)).neurons.map(n => n.uid)
    await Promise.all([1, 2, 3, 4].map(async i => { await w.setWeights(netuid, uids, uids.map(u => (u + i) * 10), 7n) }))
    const row = await client.weightsOf(netuid, (await client.uidOf(netuid, k.valHot.address))!)
    assert.equal(row.length, uids.length)
  })

  it('commit-reveal: an early reveal is WeightsTooSoonError, a reveal an epoch later reads back', async () => {
    await setDevSubnetParams(chain!, netuid, { commitRevealWeightsEnabled: true })
    assert.equal((await client.weightRules(netuid)).commitReveal, true)
    const uids = (await client.metagraph(netuid)).neurons.map(n => n.uid)
    const values = uids.map((_, i) => 500 + i)
    const salt = [1, 2, 3, 4, 5, 6, 7, 8]
    const encoded = client.api.createType('(AccountId, u16, Vec<u16>, Vec<u16>, Vec<u16>, u64)',
      [k.valHot.address, netuid, uids, values, salt, 7]).toU8a()
    const w = client.writer(k.valHot)
    // commit in the first block of an epoch (epoch = (block + netuid + 1) / (tempo + 1) in subtensor),
    // so the next block is still in the commit's epoch: too early
    const period = 11
    const head = await client.head()
    await chain!.newBlocks((period - ((head + 1 + netuid + 1) % period)) % period)
    await w.commitWeights(netuid, blake2AsU8a(encoded, 256))
    await assert.rejects(w.revealWeights(netuid, uids, values, salt, 7n), WeightsTooSoonError)
    await chain!.newBlocks(period)
    await w.revealWeights(netuid, uids, values, salt, 7n)
    const row = await client.weightsOf(netuid, (await client.uidOf(netuid, k.valHot.address))!)
    assert.equal(row[row.length - 1][1], 65535)
  })

  // last: it stops the chain
  it('a read while the endpoint is gone fails with ChainUnreachableError within its bound', async () => {
    const short = await connectChain(chain!.endpoint, { readTimeoutMs: 1500 })
    try {
      assert.ok(await short.head() > 0)
      await chain!.stop()
      await assert.rejects(short.head(), ChainUnreachableError)
      assert.equal(short.connected, false)
    } finally {
      await short.close()
    }
  })
})
