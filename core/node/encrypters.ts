// The connection encrypters a node offers, in order of preference. The dialer proposes them in this
// order and multistream-select settles on the first one the other side speaks, so a peer that only
// speaks noise still connects. Both authenticate the remote peer id (noise: the static key signed by
// the identity key; TLS: the identity key's signature in the certificate's libp2p extension).
//
// TLS 1.3 first (@libp2p/tls, Node's native OpenSSL): on 127.0.0.1 it moved a 64 MiB activation
// with 15-35% less CPU (both ends) than noise, and as fast or faster, in every run of `layerswarm
// bench transport` (docs/wire.md). Its handshake costs more (a fresh certificate per connection:
// ~17-22 ms CPU for both ends against noise's ~9-10 ms), paid once per connection.
import { noise } from '@chainsafe/libp2p-noise'
import { tls } from '@libp2p/tls'
import type { ConnectionEncrypter } from '@libp2p/interface'

/** libp2p protocol ids, in the order a node offers them. */
export const ENCRYPTER_PROTOCOLS = ['/tls/1.0.0', '/noise'] as const

export function connectionEncrypters (): Array<(components: any) => ConnectionEncrypter> {
  return [tls(), noise()]
}
