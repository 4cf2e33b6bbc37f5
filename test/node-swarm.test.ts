// A bootstrap node and three nodes on 127.0.0.1, in one process: they join through the bootstrap node,
// find each other through the network's private DHT, exchange gossip, and shut down cleanly.
import assert from 'node:assert/strict'
import { multiaddr } from '@multiformats/multiaddr'
import { createNode, dhtKey, type LayerswarmNode } from '../core/index.ts'
import { removeDirs, tempDir } from './node-helpers.ts'
import { waitFor } from './wait-helpers.ts'

describe('node: a swarm of three nodes and a bootstrap node on loopback', function () {
  this.timeout(90_000)
  const dirs: string[] = []
  let boot: LayerswarmNode
  const nodes: LayerswarmNode[] = []

  before(async () => {
    for (let i = 0; i < 4; i++) dirs.push(await tempDir())
    boot = await createNode({ dataDir: dirs[0], bootstrapNode: true })
    await boot.start()
    const bootAddr = boot.addresses().find(a => !a.includes('/ws'))!
    const t0 = Date.now()
    for (let i = 1; i <= 3; i++) {
      const n = await createNode({ dataDir: dirs[i], plugins: [], bootstrap: [bootAddr] })
      await n.start()
      nodes.push(n)
    }
    // discovery: each node knows only the bootstrap node; it learns the others from DHT queries
    await waitFor(() =>
      nodes.every(n => nodes.every(m => m === n || n.libp2p.getPeers().some(p => p.toString() === m.peerId))), {
      what: 'every node connected to every other through DHT discovery',
      state: () => `peers per node ${nodes.map(n => n.libp2p.getPeers().length).join(', ')}`
    })
    const connected = (Date.now() - t0) / 1000
    await waitFor(() =>
      nodes.every(n => n.status().dht.routingTableSize >= 3), {
      what: 'every DHT routing table to hold the 3 other peers',
      state: () => `routing table sizes ${nodes.map(n => n.status().dht.routingTableSize).join(', ')}`
    })
    console.log(`      [measure] 3 nodes discovered each other through the DHT in ${connected.toFixed(2)} s ` +
      `(routing tables full after ${((Date.now() - t0) / 1000).toFixed(2)} s)`)
  })

  after(async () => {
    await Promise.all([...nodes, boot].filter(n => n != null).map(async n => { await n.stop() }))
    await removeDirs(dirs)
  })

  it('runs the DHT in server mode under the network protocol id, and reports status', () => {
    const s = nodes[0].status()
    assert.equal(s.peerId, nodes[0].peerId)
    assert.equal(s.network, 'local')
    assert.equal(s.dht.mode, 'server')
    assert.equal(s.dht.protocol, '/layerswarm/local/kad/1.0.0')
    assert.ok(nodes[0].libp2p.getProtocols().includes('/layerswarm/local/kad/1.0.0'))
    assert.ok(!nodes[0].libp2p.getProtocols().includes('/ipfs/kad/1.0.0'), 'must never speak the public DHT protocol')
    assert.ok(s.addresses.some(a => a.startsWith('/ip4/127.0.0.1/tcp/') && a.endsWith(`/p2p/${s.peerId}`)))
    assert.ok(s.addresses.some(a => a.includes('/ws/')), 'listens on WebSockets too')
    assert.ok(s.peers.includes(boot.peerId))
    assert.deepEqual(s.plugins, [])
    assert.equal(s.bootstrap.length, 1)
    assert.equal(s.bootstrap[0].connected, true)
    const b = boot.status()
    assert.equal(b.bootstrapNode, true)
    assert.ok(boot.libp2p.getProtocols().includes('/libp2p/circuit/relay/0.2.0/hop'), 'bootstrap node serves as relay')
    assert.ok(!nodes[0].libp2p.getProtocols().includes('/libp2p/circuit/relay/0.2.0/hop'), 'ordinary nodes are no relay server')
  })

  it('finds a provider through the DHT (provide on one node, findProviders on another)', async () => {
    const key = await dhtKey(`/layerswarm/test/group/${Date.now()}`)
    const t0 = Date.now()
    await nodes[0].libp2p.contentRouting.provide(key, { signal: AbortSignal.timeout(20_000) })
    const found = await waitFor(async () => {
      for await (const p of nodes[2].libp2p.contentRouting.findProviders(key, { signal: AbortSignal.timeout(10_000) })) {
        if (p.id.toString() === nodes[0].peerId) return p
      }
      return undefined
    }, { what: 'node 3 to find node 1 as provider' })
    console.log(`      [measure] provide + findProviders in ${((Date.now() - t0) / 1000).toFixed(2)} s`)
    assert.ok(found.multiaddrs.length > 0, 'the provider record carries addresses')
  })

  it('exchanges gossip on a topic', async () => {
    const topic = '/layerswarm/test-run/heartbeat/1'
    const received = nodes.map(() => [] as string[])
    nodes.forEach((n, i) => {
      n.libp2p.services.pubsub.addEventListener('message', evt => {
        if (evt.detail.topic === topic) received[i].push(new TextDecoder().decode(evt.detail.data))
      })
      n.libp2p.services.pubsub.subscribe(topic)
    })
    await waitFor(() =>
      nodes[0].libp2p.services.pubsub.getSubscribers(topic).length >= 2, { what: 'node 1 to see nodes 2 and 3 subscribed' })
    // gossipsub forms its mesh on heartbeats: republish (bounded) until both others got one message
    await waitFor(async () => {
      await nodes[0].libp2p.services.pubsub.publish(topic, new TextEncoder().encode('hello from 1'))
      return received[1].length > 0 && received[2].length > 0
    }, { what: 'nodes 2 and 3 to receive node 1\'s message', timeoutMs: 20_000, intervalMs: 500 })
    assert.equal(received[1][0], 'hello from 1')
    assert.equal(received[2][0], 'hello from 1')
    assert.equal(received[0].length, 0, 'no echo to the publisher')
    assert.ok(nodes[0].status().topics.includes(topic))
  })

  it('accepts connections over WebSockets', async () => {
    const wsAddr = nodes[0].addresses().find(a => a.includes('/ws/'))!
    const dataDir = await tempDir(); dirs.push(dataDir)
    const client = await createNode({ dataDir, plugins: [], listen: [] })
    try {
      await client.start()
      const conn = await client.libp2p.dial(multiaddr(wsAddr), { signal: AbortSignal.timeout(10_000) })
      assert.equal(conn.remotePeer.toString(), nodes[0].peerId)
      assert.ok(conn.remoteAddr.toString().includes('/ws'), conn.remoteAddr.toString())
    } finally {
      await client.stop()
    }
  })

  it('stops cleanly: connections close and the others see it leave', async () => {
    const leaving = nodes.pop()!
    await leaving.stop()
    assert.equal(leaving.isStarted(), false)
    assert.equal(leaving.libp2p.getConnections().length, 0)
    await waitFor(() =>
      [boot, ...nodes].every(n => !n.libp2p.getPeers().some(p => p.toString() === leaving.peerId)), { what: 'the others to drop the stopped node' })
    await leaving.stop() // idempotent
  })
})
