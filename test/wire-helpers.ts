// Shared by the wire tests and bench: a minimal real libp2p node (TCP + noise + yamux) on
// 127.0.0.1, and a small deterministic PRNG. Import '../core/polyfills.ts' before this module.
import { noise } from '@chainsafe/libp2p-noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { createLibp2p, type Libp2pOptions } from 'libp2p'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import { mulberry32 } from '../core/model/prng.ts'

/** `privateKey`: the node's identity (give one to sign with it); default a fresh one. `services`: libp2p services to add (none by default). */
export async function createTestNode (privateKey?: PrivateKey, services?: Libp2pOptions['services']): Promise<Libp2p> {
  return createLibp2p({
    ...(privateKey != null ? { privateKey } : {}),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    ...(services != null ? { services } : {})
  })
}

/** A started test node with identify and gossipsub (publishing allowed before any peer subscribes). */
export async function createGossipNode (privateKey?: PrivateKey): Promise<Libp2p> {
  const node = await createTestNode(privateKey, { identify: identify(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }) })
  await node.start()
  return node
}

/**
 * Stops nodes without waiting on streams a failed test left open: connections are aborted first,
 * so teardown is bounded even when a peer's handler is still waiting.
 */
export async function stopNodes (...nodes: Array<Libp2p | undefined>): Promise<void> {
  await Promise.all(nodes.map(async (node) => {
    if (node == null) return
    for (const conn of node.getConnections()) conn.abort(new Error('test teardown'))
    await node.stop()
  }))
}

/** mulberry32: deterministic, seedable, good enough for fuzz inputs. */
export const prng: (seed: number) => () => number = mulberry32

export function randomBytes (rand: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = Math.floor(rand() * 256)
  return out
}
