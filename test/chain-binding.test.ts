// The peer-id <-> hotkey binding: a round trip verifies; tampering with either name, swapping or
// borrowing signatures, replaying another peer's binding, and malformed values of every kind are
// each a BindingError (verdict 'reject').
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import type { KeyringPair } from '@polkadot/keyring/types'
import { u8aToHex } from '@polkadot/util'
import { encodeAddress } from '@polkadot/util-crypto'
import { bindingMessage, createBinding, decodeBinding, encodeBinding, MAX_BINDING_BYTES, verifyBinding } from '../core/chain/binding.ts'
import { BindingError } from '../core/chain/errors.ts'
import { devKeyFromUri, walletCryptoReady } from '../core/chain/wallet.ts'
import type { PeerBinding } from '../core/chain/types.ts'

async function rejects (value: unknown, expectedPeer?: string, reason?: RegExp): Promise<void> {
  await assert.rejects(verifyBinding(value, expectedPeer), (err: unknown) => {
    assert.ok(err instanceof BindingError, `expected BindingError, got ${String(err)}`)
    assert.equal(err.verdict, 'reject')
    assert.equal(err.code, 'ERR_CHAIN_BINDING')
    if (reason != null) assert.match(err.reason, reason)
    return true
  })
}

describe('chain: peer binding', function () {
  this.timeout(120_000)
  let key: PrivateKey
  let otherKey: PrivateKey
  let alice: KeyringPair
  let bob: KeyringPair
  let good: PeerBinding
  let other: PeerBinding

  before(async () => {
    await walletCryptoReady()
    key = await generateKeyPair('Ed25519')
    otherKey = await generateKeyPair('Ed25519')
    alice = devKeyFromUri('//Alice')
    bob = devKeyFromUri('//Bob')
    good = await createBinding(key, alice)
    other = await createBinding(otherKey, bob)
  })

  it('round trips: created, encoded, decoded and verified', async () => {
    const peer = peerIdFromPrivateKey(key).toString()
    assert.equal(good.v, 1)
    assert.equal(good.peer, peer)
    assert.equal(good.hotkey, alice.address)
    assert.deepEqual(await verifyBinding(good), good)
    assert.deepEqual(await verifyBinding(good, peer), good)
    const bytes = encodeBinding(good)
    assert.ok(bytes.length < MAX_BINDING_BYTES)
    assert.deepEqual(await decodeBinding(bytes, peer), good)
    assert.equal(new TextDecoder().decode(bindingMessage('P', 'H')), 'layerswarm-binding/1 peer=P hotkey=H')
    // a secp256k1 peer id works as well
    const secp = await generateKeyPair('secp256k1')
    const b = await createBinding(secp, bob)
    assert.deepEqual(await verifyBinding(b, peerIdFromPrivateKey(secp).toString()), b)
  })

  it('refuses tampered names, swapped or borrowed signatures, and a replayed binding', async () => {
    await rejects({ ...good, peer: other.peer }, undefined, /peer id's key/)
    await rejects({ ...good, hotkey: bob.address }, undefined, /peer id's key/)
    await rejects({ ...good, peerSig: good.hotkeySig, hotkeySig: good.peerSig }, undefined, /did not sign/)
    await rejects({ ...good, hotkeySig: other.hotkeySig }, undefined, /hotkey did not sign/)
    await rejects({ ...good, peerSig: other.peerSig }, undefined, /peer id's key/)
    // another peer's valid binding, presented by this peer
    await rejects(other, good.peer, /not the sender/)
    // the hotkey signs a statement for another peer; the peer key signs ours: still refused
    const mixed = { ...good, hotkeySig: u8aToHex(alice.sign(bindingMessage(other.peer, alice.address))) }
    await rejects(mixed, undefined, /hotkey did not sign/)
    // the same key under another ss58 prefix is another statement
    await rejects({ ...good, hotkey: encodeAddress(alice.publicKey, 0) }, undefined, /ss58 format 42/)
    // a flipped bit in each signature
    const flip = (hex: string): string => hex.slice(0, -1) + (hex.endsWith('0') ? '1' : '0')
    await rejects({ ...good, peerSig: flip(good.peerSig) })
    await rejects({ ...good, hotkeySig: flip(good.hotkeySig) })
  })

  it('refuses garbage, wrong types, NaN and oversized values', async () => {
    const values: unknown[] = [
      null, undefined, 1, 'x', [], [good], NaN, true,
      { ...good, v: 2 }, { ...good, v: NaN }, { ...good, v: '1' },
      { ...good, extra: 1 }, (({ hotkeySig, ...rest }) => rest)(good),
      { ...good, peer: 1 }, { ...good, peer: '' }, { ...good, peer: 'x'.repeat(129) }, { ...good, peer: 'not-a-peer-id' },
      { ...good, hotkey: null }, { ...good, hotkey: '5' + 'x'.repeat(100) }, { ...good, hotkey: 'abc' },
      { ...good, peerSig: 7 }, { ...good, peerSig: 'zz' }, { ...good, peerSig: '0x' }, { ...good, peerSig: '0xabc' },
      { ...good, peerSig: '0x' + 'ab'.repeat(10_000) }, { ...good, hotkeySig: '0x' + 'ab'.repeat(63) },
      { ...good, hotkeySig: good.hotkeySig.slice(2) }, { ...good, hotkeySig: [1, 2] }
    ]
    for (const v of values) await rejects(v)
    const encoder = new TextEncoder()
    for (const bytes of [
      new Uint8Array(0), encoder.encode('{'), encoder.encode('null'), new Uint8Array([0xff, 0xfe, 0x7b]),
      new Uint8Array(MAX_BINDING_BYTES + 1), encoder.encode(JSON.stringify({ ...good, pad: 'x'.repeat(2000) }))
    ]) {
      await assert.rejects(decodeBinding(bytes), BindingError)
    }
    await assert.rejects(decodeBinding('{}' as unknown as Uint8Array), BindingError)
    assert.throws(() => encodeBinding({ ...good, peer: 'x'.repeat(2000) }), BindingError)
  })
})
