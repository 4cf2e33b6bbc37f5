// User-given multiaddrs (flags, env, config, profiles): parsed once, with errors that say where the
// bad one came from.
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { InvalidMultiaddrError } from './node-errors.ts'

export function parseMultiaddr (addr: string, where: string): Multiaddr {
  if (typeof addr !== 'string' || !addr.startsWith('/')) {
    throw new InvalidMultiaddrError(String(addr), where, { cause: new Error('a multiaddr starts with "/"') })
  }
  let ma: Multiaddr
  try {
    ma = multiaddr(addr)
  } catch (err) {
    throw new InvalidMultiaddrError(addr, where, { cause: err })
  }
  const id = peerIdOf(ma)
  if (id != null) {
    try {
      peerIdFromString(id)
    } catch (err) {
      throw new InvalidMultiaddrError(addr, where, { cause: new Error(`/p2p/${id} is not a valid peer id`) })
    }
  }
  return ma
}

export function parseMultiaddrs (addrs: readonly string[], where: string): Multiaddr[] {
  return addrs.map(a => parseMultiaddr(a, where))
}

/** The last /p2p/<id> component, if any (a relayed address names the relay first, the target last). */
export function peerIdOf (ma: Multiaddr): string | undefined {
  const p2p = ma.getComponents().filter(c => c.name === 'p2p')
  return p2p.length > 0 ? p2p[p2p.length - 1].value : undefined
}
