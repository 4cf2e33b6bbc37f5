// An unreachable bootstrap address: the node logs it clearly, retries with backoff, stays usable, and
// connects once the bootstrap node comes up. A node whose bootstrap connection drops at once still
// finds a peer that joined before it.
import assert from 'node:assert/strict'
import { createNode, loadOrCreateIdentity } from '../core/index.ts'
import { freePort, nodeSuite, recordingLogger } from './node-helpers.ts'
import { waitFor } from './wait-helpers.ts'

describe('node: unreachable bootstrap peers', function () {
  this.timeout(60_000)
  const { nodes, dataDir } = nodeSuite()

  it('logs and retries with backoff, stays usable, and connects when the bootstrap node appears', async () => {
    const bootDir = await dataDir()
    const bootId = (await loadOrCreateIdentity(bootDir)).peerId
    const port = await freePort()
    const bootAddr = `/ip4/127.0.0.1/tcp/${port}/p2p/${bootId}`

    const { logger, lines } = recordingLogger()
    const node = await createNode({
      dataDir: await dataDir(), plugins: [], bootstrap: [bootAddr], logger,
      bootstrapRetry: { initialDelayMs: 50, maxDelayMs: 400, dialTimeoutMs: 2000 }
    })
    nodes.push(node)
    await node.start()
    const retries = await waitFor(() => {
      const r = lines.filter(l => l.msg === 'bootstrap peer unreachable; will retry')
      return r.length >= 3 ? r : undefined
    }, { what: 'three logged retries' })
    assert.equal(retries[0].level, 'warn')
    assert.equal(retries[0].component, 'layerswarm:bootstrap')
    assert.equal(retries[0].addr, bootAddr)
    assert.deepEqual(retries.slice(0, 3).map(r => r.failures), [1, 2, 3])
    assert.match(retries[0].error, /ECONNREFUSED/)
    assert.ok(retries.every(r => r.retryInS <= 0.4), 'the delay is capped')
    const state = node.status().bootstrap[0]
    assert.equal(state.connected, false)
    assert.ok(state.failures >= 3 && state.lastError != null)

    // still usable: another node can connect and talk to it
    const other = await createNode({ dataDir: await dataDir(), plugins: [] })
    nodes.push(other)
    await other.start()
    const rtt = await other.libp2p.services.ping.ping(node.libp2p.getMultiaddrs()[0], { signal: AbortSignal.timeout(10_000) })
    assert.ok(rtt >= 0)

    // the bootstrap node comes up on that address: the next retry connects
    const boot = await createNode({ dataDir: bootDir, bootstrapNode: true, listen: [`/ip4/127.0.0.1/tcp/${port}`] })
    nodes.push(boot)
    await boot.start()
    await waitFor(() => node.status().bootstrap[0].connected, { what: 'the node to reach its bootstrap peer' })
    assert.ok(node.libp2p.getPeers().some(p => p.toString() === bootId))
    assert.ok(lines.some(l => l.msg === 'bootstrap peer reachable again' && l.addr === bootAddr))

    // and redials after the bootstrap node restarts
    await boot.stop()
    await waitFor(() => !node.status().bootstrap[0].connected, { what: 'the disconnect to be noticed' })
    const again = await createNode({ dataDir: bootDir, bootstrapNode: true, listen: [`/ip4/127.0.0.1/tcp/${port}`] })
    nodes.push(again)
    await again.start()
    await waitFor(() => node.status().bootstrap[0].connected, { what: 'the node to redial its restarted bootstrap peer' })
  })

  it('a node cut off from its bootstrap peer right after connecting still meets the swarm within seconds', async () => {
    const boot = await createNode({ dataDir: await dataDir(), plugins: [], controlEndpoint: false, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrapNode: true })
    nodes.push(boot)
    await boot.start()
    const bootAddr = boot.libp2p.getMultiaddrs()[0].toString()
    // B joins first; its lookups are over before A exists
    const b = await createNode({ dataDir: await dataDir(), plugins: [], controlEndpoint: false, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [bootAddr] })
    nodes.push(b)
    await b.start()
    await waitFor(() => b.libp2p.getConnections(boot.libp2p.peerId).length > 0, { what: 'B connected to the bootstrap node' })
    // A deliberate pause, part of the scenario, not a wait for an event: B's DHT lookups (kad-dht's own
    // first self-query exposes no event) must be over before A exists, or B could find A itself and the
    // test would pass without A's re-lookup. Too short can only make it pass for the wrong reason, never fail.
    await new Promise(resolve => setTimeout(resolve, 1500))
    // A joins and loses its only connection at once; it redials after 3 s, past its DHT's first self-lookup
    const { logger, lines } = recordingLogger()
    const a = await createNode({
      dataDir: await dataDir(), plugins: [], controlEndpoint: false, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [bootAddr], logger,
      bootstrapRetry: { initialDelayMs: 3000 }
    })
    nodes.push(a)
    const cut = (evt: CustomEvent<{ remotePeer: { equals: (p: unknown) => boolean } }>): void => {
      if (evt.detail.remotePeer.equals(boot.libp2p.peerId)) {
        a.libp2p.removeEventListener('connection:open', cut as never)
        void a.libp2p.hangUp(boot.libp2p.peerId)
      }
    }
    a.libp2p.addEventListener('connection:open', cut as never)
    await a.start()
    await waitFor(() => lines.some(l => ['reconnected to bootstrap peer', 'bootstrap peer reachable again'].includes(l.msg as string)), { what: 'the redial', timeoutMs: 15_000 })
    // within seconds, not at the DHT's next periodic self-lookup (QUERY_SELF_INTERVAL_MS; kad-dht's default is 5 min)
    await waitFor(() => a.libp2p.getConnections(b.libp2p.peerId).length > 0, { what: 'A connected to B', timeoutMs: 8000 })
  })

  it('skips its own address in the bootstrap list', async () => {
    const dir = await dataDir()
    const id = (await loadOrCreateIdentity(dir)).peerId
    const port = await freePort()
    const self = `/ip4/127.0.0.1/tcp/${port}/p2p/${id}`
    const n = await createNode({ dataDir: dir, bootstrapNode: true, listen: [`/ip4/127.0.0.1/tcp/${port}`], bootstrap: [self] })
    nodes.push(n)
    await n.start()
    assert.deepEqual(n.status().bootstrap, [])
  })
})
