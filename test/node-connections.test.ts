// Direct vs relayed connections (status --json `connections`) and the NAT reachability rule
// (status --json `nat`), without a network: fake connections and identify answers.
import assert from 'node:assert/strict'
import { isRelayedAddr, summarizeConnections } from '../core/node/connections.ts'
import { ipOf, NatMonitor, reachabilityOf } from '../core/node/nat-status.ts'
import { silentLogger } from '../core/logger.ts'

const conn = (peer: string, addr: string, limits?: object) => ({ remotePeer: { toString: () => peer }, remoteAddr: { toString: () => addr }, limits })
const RELAY = '/ip4/7.77.0.1/tcp/4001/p2p/12D3KooWRelay/p2p-circuit'

describe('node: connections and NAT status', () => {
  it('a /p2p-circuit address is relayed', () => {
    assert.equal(isRelayedAddr(RELAY), true)
    assert.equal(isRelayedAddr('/ip4/7.77.0.2/tcp/4001'), false)
  })

  it('counts peers, a peer with a direct connection as direct', () => {
    const s = summarizeConnections([
      conn('b', RELAY, { bytes: 1n }),
      conn('a', '/ip4/7.77.0.1/tcp/4001'),
      conn('c', RELAY),
      conn('c', '/ip4/7.77.0.3/tcp/5555'),
      conn('b', RELAY)
    ])
    assert.equal(s.direct, 2)
    assert.equal(s.relayed, 1)
    assert.deepEqual(s.peers.map(p => [p.peer, p.direct, p.limited]), [['a', true, false], ['b', false, true], ['c', true, false]])
    assert.equal(s.peers[2].addr, '/ip4/7.77.0.3/tcp/5555')
    assert.deepEqual(summarizeConnections([]), { direct: 0, relayed: 0, peers: [] })
  })

  it('reachability: a confirmed public address wins, a translated IP means private, else unknown', () => {
    assert.equal(reachabilityOf(['/ip4/7.77.0.1/tcp/4001'], ['7.77.0.2']), 'public')
    assert.equal(reachabilityOf([], ['7.77.0.2']), 'private')
    assert.equal(reachabilityOf([], []), 'unknown')
    assert.equal(ipOf('/ip4/7.77.0.2/tcp/1'), '7.77.0.2')
    assert.equal(ipOf('/dns4/x.org/tcp/1'), undefined)
  })

  it('only a peer we dialed, seeing us from a public IP no interface of ours has, makes us private', () => {
    const events = new EventTarget()
    const listened: unknown[] = []
    const libp2p = Object.assign(events, {
      getMultiaddrs: () => [],
      peerId: { toString: () => '12D3KooWHome' },
      components: {
        addressManager: { getAddressesWithMetadata: () => [] },
        transportManager: { listen: async (a: unknown[]) => { listened.push(...a) } }
      }
    })
    const mon = new NatMonitor(libp2p as never, { relayListen: false, log: silentLogger, localIps: () => new Set(['10.78.1.2', '7.77.0.9']) })
    mon.start()
    const identify = (observed: string, direction: string, remote = '/ip4/7.77.0.1/tcp/4001') => {
      events.dispatchEvent(new CustomEvent('peer:identify', { detail: { observedAddr: { toString: () => observed }, connection: { direction, remoteAddr: { toString: () => remote } } } }))
    }
    identify('/ip4/7.77.0.2/tcp/40000', 'inbound') // a stranger that dialed us: not trusted
    identify('/ip4/10.78.1.2/tcp/40000', 'outbound') // a private address: a LAN, no NAT to speak of
    identify('/ip4/7.77.0.9/tcp/40000', 'outbound') // our own interface: no translation
    identify('/ip4/7.77.0.2/tcp/40000', 'outbound', RELAY) // over a relay: says nothing of our IP
    assert.equal(mon.status().reachability, 'unknown')
    assert.equal(listened.length, 0)
    identify('/ip4/7.77.0.2/tcp/40000', 'outbound')
    const st = mon.status()
    assert.equal(st.reachability, 'private')
    assert.deepEqual(st.translatedIps, ['7.77.0.2'])
    assert.equal(st.relayListen, true)
    assert.equal(st.relayReason, 'private')
    assert.equal(mon.relayedOnly(), true)
    assert.equal(String(listened[0]), '/p2p-circuit')
    mon.stop()
  })
})
