// The AutoNAT dial-back wrapper (core/node/autonat-dial-back.ts): a dial of one multiaddr opens a
// fresh connection (force), so AutoNAT's close() after the dial-back cannot close a connection we
// already had; other dials and the connection manager's other methods are left as they are.
import assert from 'node:assert/strict'
import { multiaddr } from '@multiformats/multiaddr'
import type { ConnectionManager } from '@libp2p/interface-internal'
import { forcingSingleAddrDials } from '../core/node/autonat-dial-back.ts'

function fakeManager (): { cm: ConnectionManager, calls: Array<{ target: unknown, options: unknown }> } {
  const calls: Array<{ target: unknown, options: unknown }> = []
  const impl = {
    conns: ['c1'],
    async openConnection (target: unknown, options?: unknown) { calls.push({ target, options }); return 'conn' },
    getConnections () { return this.conns }
  }
  return { cm: impl as unknown as ConnectionManager, calls }
}

describe('autonat dial-back: fresh connections', () => {
  const addr = multiaddr('/ip4/7.77.0.1/tcp/4001')

  it('forces a new connection for a dial of one multiaddr, keeping the caller options', async () => {
    const { cm, calls } = fakeManager()
    const signal = new AbortController().signal
    await forcingSingleAddrDials(cm).openConnection(addr, { signal })
    assert.deepEqual(calls[0].options, { signal, force: true })
  })

  it('leaves dials of address lists and peer ids as they are', async () => {
    const { cm, calls } = fakeManager()
    const w = forcingSingleAddrDials(cm)
    await w.openConnection([addr], { priority: 1 })
    const peer = { toString: () => '12D3KooWpeer', type: 'Ed25519' }
    await w.openConnection(peer as unknown as Parameters<ConnectionManager['openConnection']>[0])
    assert.deepEqual(calls.map(c => c.options), [{ priority: 1 }, undefined])
  })

  it('passes the other methods through, bound to the real manager', () => {
    const { cm } = fakeManager()
    assert.deepEqual(forcingSingleAddrDials(cm).getConnections(), ['c1'])
  })
})
