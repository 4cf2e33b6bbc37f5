// Gossip across a connection change (core/node/gossip-streams.ts): two real libp2p nodes with
// gossipsub, first connected once; a second connection is opened (as DCUtR or a WebRTC upgrade does
// beside a relayed one) and the first is then closed. Without the keeper gossipsub loses the peer for
// good (the control: nothing gets through, the dependency's behaviour the keeper exists for); with it
// on both nodes, gossip flows again both ways over the surviving connection.
import '../core/polyfills.ts'
import assert from 'node:assert/strict'
import type { Libp2p } from '@libp2p/interface'
import { GossipStreamKeeper, type GossipInternals } from '../core/node/gossip-streams.ts'
import { silentLogger } from '../core/logger.ts'
import { sleep } from '../core/timers.ts'
import { createGossipNode, stopNodes } from './wire-helpers.ts'
import { waitFor } from './wait-helpers.ts'

const TOPIC = 'lsw-gossip-streams-test'
type Pubsub = GossipInternals & {
  subscribe: (t: string) => void
  publish: (t: string, d: Uint8Array) => Promise<unknown>
  getSubscribers: (t: string) => unknown[]
  addEventListener: (e: string, f: (evt: any) => void) => void
}
const pubsubOf = (n: Libp2p): Pubsub => (n as unknown as { services: { pubsub: Pubsub } }).services.pubsub

describe('node: gossip streams across a connection change', function () {
  this.timeout(60_000)
  let nodes: Libp2p[] = []
  let keepers: GossipStreamKeeper[] = []
  afterEach(async () => {
    for (const k of keepers) k.stop()
    keepers = []
    await stopNodes(...nodes)
    nodes = []
  })

  /** Two subscribed nodes, meshed over one connection, then a second connection beside it and the first closed. */
  async function changeConnection (keep: boolean): Promise<{ a: Libp2p, b: Libp2p, got: { a: string[], b: string[] } }> {
    nodes = [await createGossipNode(), await createGossipNode()]
    const [a, b] = nodes
    if (keep) keepers = nodes.map(n => { const k = new GossipStreamKeeper(n, pubsubOf(n), silentLogger); k.start(); return k })
    const got = { a: [] as string[], b: [] as string[] }
    for (const [n, list] of [[a, got.a], [b, got.b]] as const) {
      pubsubOf(n).subscribe(TOPIC)
      pubsubOf(n).addEventListener('message', evt => { if (evt.detail.topic === TOPIC) list.push(new TextDecoder().decode(evt.detail.data)) })
    }
    const first = await a.dial(b.getMultiaddrs()[0])
    await waitFor(() => pubsubOf(a).getSubscribers(TOPIC).length > 0 && pubsubOf(b).getSubscribers(TOPIC).length > 0 ? true : undefined,
      { what: 'both nodes see the other subscribed', timeoutMs: 10_000, intervalMs: 50 })
    await pubsubOf(a).publish(TOPIC, new TextEncoder().encode('before'))
    await waitFor(() => got.b.includes('before') ? true : undefined, { what: 'gossip over the first connection', timeoutMs: 10_000, intervalMs: 50 })
    const second = await a.dial(b.getMultiaddrs()[0], { force: true })
    assert.notEqual(second.id, first.id, 'a second connection')
    await sleep(300) // its identify runs
    await first.close()
    assert.equal(a.getConnections(b.peerId).filter(c => c.status === 'open').length, 1, 'one connection left')
    return { a, b, got }
  }

  /** Publishes from both sides every 200 ms until each has the other's message or `ms` pass. */
  async function exchange (a: Libp2p, b: Libp2p, got: { a: string[], b: string[] }, ms: number): Promise<boolean> {
    const until = Date.now() + ms
    for (let i = 0; Date.now() < until; i++) {
      await pubsubOf(a).publish(TOPIC, new TextEncoder().encode(`a${i}`)).catch(() => {})
      await pubsubOf(b).publish(TOPIC, new TextEncoder().encode(`b${i}`)).catch(() => {})
      if (got.b.some(m => m.startsWith('a')) && got.a.some(m => m.startsWith('b'))) return true
      await sleep(200)
    }
    return false
  }

  it('without the keeper, gossipsub loses the peer when the connection its streams used closes (the control)', async () => {
    const { a, b, got } = await changeConnection(false)
    assert.equal(await exchange(a, b, got, 5000), false, 'gossip got through without the keeper: gossipsub now handles this itself, and the keeper can go')
  })

  it('with the keeper, gossip flows both ways over the surviving connection', async () => {
    const { a, b, got } = await changeConnection(true)
    assert.equal(await exchange(a, b, got, 10_000), true, `messages: a got ${got.a.join(',')}; b got ${got.b.join(',')}`)
    assert.ok(keepers.some(k => k.reattached > 0), 'a stream was reopened')
  })
})
