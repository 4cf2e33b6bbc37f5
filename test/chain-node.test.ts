// The chain in the node, with real libp2p nodes on loopback and a real subtensor runtime (chopsticks on
// ../shared/chain/raonet.json in a child process): a node that knows only the chain endpoint finds a
// registered peer through the metagraph's axons; an unregistered node's heartbeats are REJECTed and its
// streams refused with NotAdmittedError; a node whose binding does not verify is refused; the chain
// going away does not stop the nodes, which keep their admitted peers.
//
// Loopback: the runtime refuses to serve 127.0.0.1 (InvalidIpAddress), so node A serves 10.0.0.1 and
// the nodes read the chain through `loopbackAxons`, which maps 10.0.0.1 to 127.0.0.1 in the metagraph.
// Everything else is the real path (the real metagraph, binding exchange, dial without a peer id);
// the full flow test dials real 10.x addresses in network namespaces.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import type { KeyringPair } from '@polkadot/keyring/types'
import { connectChain, type ChainClient } from '../core/chain/chain-client.ts'
import { createDevSubnet, defaultChainSpec, startDevChain, type DevChain } from '../core/chain/dev-chain.ts'
import { createBinding, encodeBinding } from '../core/chain/binding.ts'
import { serveBinding } from '../core/chain/binding-protocol.ts'
import type { ChainNode } from '../core/chain/chain-node.ts'
import type { WatchedReader } from '../core/chain/metagraph-watch.ts'
import { devKeyFromUri, walletCryptoReady } from '../core/chain/wallet.ts'
import { Tokens } from '../core/contracts/tokens.ts'
import type { MembershipService } from '../core/membership/index.ts'
import { createNode, type LayerswarmNode } from '../core/node/create-node.ts'
import type { PeerJudge } from '../core/peer-judge.ts'
import { handleFramed, requestFrame, RemoteError } from '../core/wire/index.ts'
import { PIPELINE_FORWARD_PROTOCOL } from '../core/pipeline/protocol.ts'
import { freePort, removeDirs, tempDir } from './node-helpers.ts'
import { waitFor } from './wait-helpers.ts'

const TAO = 1_000_000_000n
const SPEC = defaultChainSpec()
const RUN = 'c'.repeat(32)

/** The chain as the nodes read it, with the 10.0.0.1 axon mapped to loopback (see the top of this file). */
function loopbackAxons (client: ChainClient): WatchedReader {
  return {
    head: async o => await client.head(o),
    subnetExists: async (n, o) => await client.subnetExists(n, o),
    weightRules: async (n, o) => await client.weightRules(n, o),
    metagraph: async (n, o) => {
      const m = await client.metagraph(n, o)
      return { ...m, neurons: m.neurons.map(x => x.axon?.ip === '10.0.0.1' ? { ...x, axon: { ...x.axon, ip: '127.0.0.1' } } : x) }
    },
    onHead: cb => client.onHead(cb)
  }
}

describe('chain node: bootstrap and admission from a real metagraph', function () {
  this.timeout(180_000)
  let chain: DevChain | undefined
  let admin: ChainClient | undefined
  const clients: ChainClient[] = []
  const nodes: LayerswarmNode[] = []
  const dirs: string[] = []
  let netuid: number
  let portA: number
  const k: Record<string, KeyringPair> = {}
  let a: LayerswarmNode, b: LayerswarmNode, c: LayerswarmNode, d: LayerswarmNode

  before(async function () {
    if (!existsSync(SPEC)) {
      console.log(`    skipped: ${SPEC} is absent (the chain tests need ../shared/chain/raonet.json)`)
      this.skip()
    }
    await walletCryptoReady()
    for (const name of ['cold', 'ownerHot', 'hotA', 'hotB', 'hotC']) k[name] = devKeyFromUri(`//H4Node${name}`)
    chain = await startDevChain({ genesis: SPEC })
    admin = await connectChain(chain.endpoint)
    await chain.fund(k.cold.address, 100_000n * TAO)
    netuid = await createDevSubnet(chain, admin, k.cold, k.ownerHot.address)
    await admin.burnedRegister(k.cold, k.hotA.address, netuid)
    await admin.burnedRegister(k.cold, k.hotB.address, netuid)
    // hotC stays unregistered
    portA = await freePort()
    await admin.serveAxon(k.hotA, netuid, { ip: '10.0.0.1', port: portA })
  })

  after(async () => {
    await Promise.all(nodes.map(async n => { await n.stop() }))
    for (const cl of clients) await cl.close()
    await admin?.close()
    await chain?.stop()
    await removeDirs(dirs)
  })

  async function chainNode (hotkey: KeyringPair, listen: string): Promise<LayerswarmNode> {
    const dir = await tempDir('lsw-chain-node-'); dirs.push(dir)
    const client = await connectChain(chain!.endpoint); clients.push(client)
    const node = await createNode({
      dataDir: dir,
      plugins: [],
      listen: [listen],
      controlEndpoint: false,
      runtime: { runId: 'chain-node-test', stages: 2, membership: { intervalMs: 200 } },
      bootstrapRetry: { initialDelayMs: 100, maxDelayMs: 1000 },
      chain: { endpoint: chain!.endpoint, netuid, hotkey, reader: loopbackAxons(client), refreshBlocks: 1, pollMs: 300, connectTimeoutMs: 30_000 }
    })
    nodes.push(node)
    await node.start()
    return node
  }
  const membership = (n: LayerswarmNode): MembershipService => n.container.resolve<MembershipService>(Tokens.Membership)
  const judge = (n: LayerswarmNode): PeerJudge => n.container.resolve<PeerJudge>(Tokens.PeerJudge)
  const chainOf = (n: LayerswarmNode): ChainNode => n.container.resolve<ChainNode>(Tokens.Chain)
  /** One exchange on A's pipeline protocol (registered below with the stage server's admission). */
  const ask = async (from: LayerswarmNode): Promise<unknown> => await requestFrame(from.libp2p, a.libp2p.peerId, PIPELINE_FORWARD_PROTOCOL,
    { kind: 'request', metadata: { op: 'ping' } }, undefined, { runId: RUN, timeoutMs: 15_000 })

  it('a node started with only the chain endpoint finds a registered peer through the metagraph', async () => {
    a = await chainNode(k.hotA, `/ip4/127.0.0.1/tcp/${portA}`)
    // what the stage server registers: the pipeline protocol behind the judge's admission
    await handleFramed(a.libp2p, PIPELINE_FORWARD_PROTOCOL, async (fs, _conn, signal) => {
      await fs.expect({ signal })
      await fs.send({ kind: 'response', metadata: { op: 'pong' } }, undefined, { signal })
    }, { runId: RUN, admit: async (peer, signal) => { await judge(a).admit(peer, signal, 'pipeline') } })
    assert.equal(a.status().chain?.uid != null, true)
    assert.deepEqual(a.status().chain?.bootstrap, []) // its own axon is not a target

    b = await chainNode(k.hotB, '/ip4/127.0.0.1/tcp/0')
    assert.equal(b.config.bootstrap.length, 0)
    assert.deepEqual(b.status().chain?.bootstrap, [{ addr: `/ip4/127.0.0.1/tcp/${portA}`, hotkey: k.hotA.address }])
    await waitFor(() => b.status().bootstrap.some(s => s.connected), { what: 'B to reach A at its axon' })
    await waitFor(() => chainOf(b).hotkeyOf(a.peerId) === k.hotA.address && judge(b).admissionOf(a.peerId) === 'admitted', { what: 'B to admit A under its axon\'s hotkey' })
    await waitFor(() => membership(a).member(b.peerId) != null && membership(b).member(a.peerId) != null, { what: 'A and B in each other\'s membership view' })
    assert.equal(judge(a).admissionOf(b.peerId), 'admitted')
    assert.equal(chainOf(a).hotkeyOf(b.peerId), k.hotB.address)
    assert.deepEqual(await ask(b).then(f => (f as { header: { metadata: unknown } }).header.metadata), { op: 'pong' })
    assert.equal(a.status().chain?.peers.admitted, 1)
  })

  it('an unregistered node\'s heartbeats are REJECTed and its pipeline streams refused with NotAdmittedError', async () => {
    c = await chainNode(k.hotC, '/ip4/127.0.0.1/tcp/0')
    assert.equal(c.status().chain?.uid, null)
    await waitFor(() => c.libp2p.getPeers().some(p => p.toString() === a.peerId), { what: 'C to reach A at its axon' })
    const err = await ask(c).then(() => undefined, (e: unknown) => e)
    assert.ok(err instanceof RemoteError, String(err))
    assert.equal(err.remoteCode, 'ERR_CHAIN_NOT_ADMITTED')
    assert.match(err.message, /not registered on subnet/)
    assert.equal(judge(a).admissionOf(c.peerId), 'refused')
    assert.equal(judge(a).penaltiesOf(c.peerId), 1)
    await waitFor(() => (membership(a).stats().rejected.ERR_MEMBER_HB_NOT_ADMITTED ?? 0) > 0, { what: 'A to REJECT a heartbeat of C' })
    assert.equal(membership(a).member(c.peerId), undefined)
    assert.ok(a.status().chain!.peers.refused >= 1)
  })

  it('a node whose binding does not verify (it replays A\'s) is refused', async () => {
    const dir = await tempDir('lsw-chain-node-'); dirs.push(dir)
    d = await createNode({ dataDir: dir, plugins: [], listen: ['/ip4/127.0.0.1/tcp/0'], controlEndpoint: false, bootstrap: [a.addresses()[0]] })
    nodes.push(d)
    await d.start()
    await serveBinding(d.libp2p, encodeBinding(await createBinding(a.privateKey, k.hotA)))
    const err = await ask(d).then(() => undefined, (e: unknown) => e)
    assert.ok(err instanceof RemoteError, String(err))
    assert.equal(err.remoteCode, 'ERR_CHAIN_NOT_ADMITTED')
    assert.match(err.message, /binding does not verify: binding names peer .* not the sender/)
    assert.equal(judge(a).admissionOf(d.peerId), 'refused')
    assert.equal(chainOf(a).hotkeyOf(d.peerId), undefined)
  })

  it('the chain going away does not stop the nodes: they keep their admitted peers', async () => {
    const block = a.status().chain!.metagraph.block
    await chain!.stop()
    await waitFor(() => a.status().chain?.connected === false && b.status().chain?.connected === false, { what: 'A and B to notice the chain is gone', timeoutMs: 60_000 })
    assert.equal(a.status().chain?.metagraph.block, block) // the last metagraph stands
    assert.equal(judge(a).admissionOf(b.peerId), 'admitted')
    assert.equal(judge(a).admissionOf(c.peerId), 'refused')
    assert.deepEqual(await ask(b).then(f => (f as { header: { metadata: unknown } }).header.metadata), { op: 'pong' })
    await waitFor(() => membership(a).member(b.peerId) != null, { what: 'B\'s heartbeats still accepted by A' })
    assert.ok(a.isStarted() && b.isStarted())
  })
})
