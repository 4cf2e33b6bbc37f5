// The peer-id <-> hotkey binding: a node's libp2p key and its hotkey both sign one statement naming
// the two, so a peer can check that whoever holds this peer id also holds that hotkey (and the
// hotkey's owner chose this peer id) before treating the node as the hotkey's neuron. Neither
// signature alone suffices: the peer signature stops a node claiming someone else's hotkey, the
// hotkey signature stops it claiming a hotkey it does not hold.
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import type { KeyringPair } from '@polkadot/keyring/types'
import { hexToU8a, u8aToHex } from '@polkadot/util'
import { cryptoWaitReady, decodeAddress, encodeAddress, signatureVerify } from '@polkadot/util-crypto'
import { BindingError } from './errors.ts'
import type { PeerBinding } from './types.ts'
import { SS58_FORMAT } from './wallet.ts'

/** An encoded binding's largest size: the real one is about 400 bytes. */
export const MAX_BINDING_BYTES = 1024

const BINDING_KEYS = ['v', 'peer', 'hotkey', 'peerSig', 'hotkeySig'].sort().join(',')
const MAX_PEER_CHARS = 128
const MAX_HOTKEY_CHARS = 64
// Ed25519 64 bytes, secp256k1 DER up to 72; sr25519/ed25519 64, ecdsa 65
const MAX_PEER_SIG_BYTES = 80
const HOTKEY_SIG_BYTES = [64, 65]
const HEX = /^0x(?:[0-9a-fA-F]{2})+$/

/** The statement both keys sign. */
export function bindingMessage (peer: string, hotkey: string): Uint8Array {
  return new TextEncoder().encode(`layerswarm-binding/1 peer=${peer} hotkey=${hotkey}`)
}

/** Signs a binding with the node's libp2p key and its hotkey. */
export async function createBinding (privateKey: PrivateKey, hotkey: KeyringPair): Promise<PeerBinding> {
  await cryptoWaitReady()
  const peer = peerIdFromPrivateKey(privateKey).toString()
  const address = encodeAddress(hotkey.publicKey, SS58_FORMAT)
  const msg = bindingMessage(peer, address)
  const peerSig = await privateKey.sign(msg)
  return { v: 1, peer, hotkey: address, peerSig: u8aToHex(peerSig), hotkeySig: u8aToHex(hotkey.sign(msg)) }
}

function hexField (value: unknown, name: string, sizes: (n: number) => boolean): Uint8Array {
  if (typeof value !== 'string' || value.length > 2 + 2 * MAX_PEER_SIG_BYTES || !HEX.test(value)) {
    throw new BindingError(`${name} is not 0x-prefixed hex of a signature`)
  }
  const bytes = hexToU8a(value)
  if (!sizes(bytes.length)) throw new BindingError(`${name} has ${bytes.length} bytes`)
  return bytes
}

/**
 * Checks a binding received from a peer (any JSON value) and returns it typed: its shape, both
 * signatures, and that it names `expectedPeer` when given (the peer we are talking to: a binding
 * of another peer replayed by this one is refused). Throws BindingError saying why.
 */
export async function verifyBinding (value: unknown, expectedPeer?: string): Promise<PeerBinding> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new BindingError('not an object')
  const b = value as Record<string, unknown>
  if (Object.keys(b).sort().join(',') !== BINDING_KEYS) throw new BindingError(`fields must be exactly ${BINDING_KEYS}`)
  if (b.v !== 1) throw new BindingError('unknown version (v must be 1)')
  const { peer, hotkey } = b
  if (typeof peer !== 'string' || peer.length === 0 || peer.length > MAX_PEER_CHARS) throw new BindingError('peer is not a peer id')
  if (typeof hotkey !== 'string' || hotkey.length === 0 || hotkey.length > MAX_HOTKEY_CHARS) throw new BindingError('hotkey is not an ss58 address')
  if (expectedPeer !== undefined && peer !== expectedPeer) throw new BindingError(`binding names peer ${peer}, not the sender ${expectedPeer}`)

  let publicKey
  try {
    publicKey = peerIdFromString(peer).publicKey
  } catch (err) {
    throw new BindingError('peer does not parse as a peer id', { cause: err })
  }
  if (publicKey == null) throw new BindingError('peer id does not embed its public key (RSA peer ids are not accepted)')

  await cryptoWaitReady()
  let hotkeyPublic: Uint8Array
  try {
    hotkeyPublic = decodeAddress(hotkey)
  } catch (err) {
    throw new BindingError('hotkey does not decode as ss58', { cause: err })
  }
  // one text per key: the statement signs the address string, so other ss58 prefixes are refused
  if (hotkeyPublic.length !== 32 || encodeAddress(hotkeyPublic, SS58_FORMAT) !== hotkey) {
    throw new BindingError(`hotkey is not a 32-byte key in ss58 format ${SS58_FORMAT}`)
  }

  const peerSig = hexField(b.peerSig, 'peerSig', n => n > 0 && n <= MAX_PEER_SIG_BYTES)
  const hotkeySig = hexField(b.hotkeySig, 'hotkeySig', n => HOTKEY_SIG_BYTES.includes(n))
  const msg = bindingMessage(peer, hotkey)
  let peerOk = false
  try {
    peerOk = await publicKey.verify(msg, peerSig)
  } catch {}
  if (!peerOk) throw new BindingError('the peer id\'s key did not sign this binding')
  let hotkeyOk = false
  try {
    hotkeyOk = signatureVerify(msg, hotkeySig, hotkeyPublic).isValid
  } catch {}
  if (!hotkeyOk) throw new BindingError('the hotkey did not sign this binding')
  return { v: 1, peer, hotkey, peerSig: b.peerSig as string, hotkeySig: b.hotkeySig as string }
}

/** The binding as JSON bytes (what travels on the wire). */
export function encodeBinding (binding: PeerBinding): Uint8Array {
  const bytes = new TextEncoder().encode(JSON.stringify({ v: binding.v, peer: binding.peer, hotkey: binding.hotkey, peerSig: binding.peerSig, hotkeySig: binding.hotkeySig }))
  if (bytes.length > MAX_BINDING_BYTES) throw new BindingError(`encoded binding is ${bytes.length} bytes (max ${MAX_BINDING_BYTES})`)
  return bytes
}

/** Parses and verifies a binding received as bytes (see verifyBinding); BindingError on any failure. */
export async function decodeBinding (bytes: Uint8Array, expectedPeer?: string): Promise<PeerBinding> {
  if (!(bytes instanceof Uint8Array)) throw new BindingError('not bytes')
  if (bytes.length > MAX_BINDING_BYTES) throw new BindingError(`${bytes.length} bytes (max ${MAX_BINDING_BYTES})`)
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (err) {
    throw new BindingError('not UTF-8 JSON', { cause: err })
  }
  return await verifyBinding(value, expectedPeer)
}
