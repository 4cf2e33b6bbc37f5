// Circuit relay v2: a node that asks for it reserves a slot on the bootstrap node (the relay server)
// and is then reachable through the relay address, as a node behind NAT would be.
import assert from 'node:assert/strict'
import { multiaddr } from '@multiformats/multiaddr'
import { createNode, type LayerswarmNode } from '../core/index.ts'
import { nodeSuite } from './node-helpers.ts'
import { waitFor } from './wait-helpers.ts'

describe('node: circuit relay through the bootstrap node', function () {
  this.timeout(60_000)
  const { nodes, dataDir } = nodeSuite()
  const make = async (opts: Parameters<typeof createNode>[0]): Promise<LayerswarmNode> => {
    const n = await createNode({ dataDir: await dataDir(), plugins: [], ...opts })
    nodes.push(n)
    await n.start()
    return n
  }

  it('reserves a slot and is dialable through the relay address', async () => {
    const boot = await make({ bootstrapNode: true, listen: ['/ip4/127.0.0.1/tcp/0'] })
    const hidden = await make({ relayListen: true, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [boot.addresses()[0]] })
    const relayed = await waitFor(() =>
      hidden.addresses().find(a => a.includes('/p2p-circuit/')), { what: 'a relay reservation (a /p2p-circuit address)' })
    assert.ok(relayed.startsWith(boot.addresses()[0]), `relayed through the bootstrap node: ${relayed}`)

    // the dialer listens nowhere: a listening dialer was sometimes dialed back directly (its address
    // came over identify on the relayed connection), and a peer with a direct connection is direct
    const dialer = await make({ listen: [] })
    const conn = await dialer.libp2p.dial(multiaddr(relayed), { signal: AbortSignal.timeout(10_000) })
    assert.equal(conn.remotePeer.toString(), hidden.peerId)
    assert.ok(conn.remoteAddr.toString().includes('/p2p-circuit'), 'the connection runs through the relay')
    // the swarm's relays carry training traffic: no circuit v2 default limits (create-node.ts)
    assert.equal(conn.limits, undefined, 'our relays relay without limits')
    const seen = await waitFor(() => hidden.status().connections.peers.find(p => p.peer === dialer.peerId), { what: 'the relayed connection in status' })
    assert.equal(seen.direct, false, 'status says the connection is relayed')
  })
})
