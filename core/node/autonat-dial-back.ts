// AutoNAT (v1, @libp2p/autonat 3.0.28) with a dial-back that opens a fresh connection.
//
// The AutoNAT server proves a peer reachable by dialing the address the peer asks about, then
// closes the connection it dialed. It dials with connectionManager.openConnection(addr) without
// `force`, so when we already hold a connection to that peer at that address (we dialed it: a
// bootstrap node, a relay) libp2p hands back the existing connection: the "dial back" proves
// nothing, and the server then closes our only connection to the peer. A relay asks every peer
// that connects (again after every reconnect, until enough network segments confirmed it), so a
// public node next to a relay was cut off about once a second, for good: it never met the swarm
// (test/netns/netns-nat.test.ts). Here the server's single-address dials get `force: true`: a new
// connection, closed afterwards, and the one we had stays. Its other dials (a random walk, with a
// list of addresses) are left as they are.
import { autoNAT, type AutoNATComponents, type AutoNATServiceInit } from '@libp2p/autonat'
import type { ConnectionManager } from '@libp2p/interface-internal'
import { isMultiaddr } from '@multiformats/multiaddr'

type OpenConnection = ConnectionManager['openConnection']

/** Wraps a connection manager: a dial of one multiaddr always opens a new connection. */
export function forcingSingleAddrDials (cm: ConnectionManager): ConnectionManager {
  const open: OpenConnection = async (target, options) => {
    return await cm.openConnection(target, isMultiaddr(target) ? { ...options, force: true } : options)
  }
  return new Proxy(cm, {
    get (t, prop) {
      if (prop === 'openConnection') return open
      const v: unknown = Reflect.get(t, prop, t)
      return typeof v === 'function' ? v.bind(t) : v
    }
  })
}

/** autoNAT(init), its dial-backs on fresh connections (see above). */
export function autoNATFreshDialBack (init: AutoNATServiceInit): (components: AutoNATComponents) => unknown {
  const factory = autoNAT(init)
  return components => {
    const wrapped: AutoNATComponents = Object.create(components, {
      connectionManager: { value: forcingSingleAddrDials(components.connectionManager), enumerable: true }
    })
    return factory(wrapped)
  }
}
