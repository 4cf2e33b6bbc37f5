// Averaging groups that Sybil provider records cannot empty (issue 15): 24 bare identities that
// ADD_PROVIDER a round's group key are left out of the group (only peers the view lists at the
// stage are partners), never greeted, and do not crowd the honest partner out.
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import { DhtGroupFinder } from '../core/averaging/group.ts'

/** A DHT whose group keys 24 Sybils and one honest partner provided (the Sybils first). */
function sybilDht (providers: PeerId[]): unknown {
  return {
    contentRouting: {
      provide: async () => {},
      findProviders: async function * () { for (const id of providers) yield { id, multiaddrs: [] } }
    }
  }
}

describe('averaging: Sybil provider records', function () {
  let me: string
  let honest: PeerId
  let sybils: PeerId[]
  before(async () => {
    const ids = await Promise.all(Array.from({ length: 26 }, async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))))
    me = ids[0].toString()
    honest = ids[1]
    sybils = ids.slice(2)
  })

  async function find (isPartner?: (p: string) => boolean): Promise<{ found: Set<string>, greeted: string[] }> {
    const finder = new DhtGroupFinder(sybilDht([...sybils, honest]) as never, { pollMs: 10, isPartner })
    const found = new Set([me])
    const greeted: string[] = []
    await finder.find({ name: '/layerswarm/r/averaging/1/0/0', self: me, deadline: Date.now() + 100, found, onFound: p => { greeted.push(p) } })
    return { found, greeted }
  }

  it('without the view every provider is a candidate (the attack)', async () => {
    const { found } = await find()
    assert.equal(found.size, 26)
  })

  it('with the view only the listed partner is found and greeted', async () => {
    const { found, greeted } = await find(p => p === honest.toString())
    assert.deepEqual([...found].sort(), [me, honest.toString()].sort())
    assert.deepEqual(greeted, [honest.toString()])
  })
})
