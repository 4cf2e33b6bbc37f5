// Accusations: what a checker gossips on `/layerswarm/<runId>/evidence/1.0.0` when a check failed.
// Small (well under 1 KiB): who accuses, of what, and the producer's signed commitment; the evidence
// itself (the hop's inputs, output and weights) stays with the accuser, served by commitment id
// (reveal.ts EVIDENCE_PROTOCOL), so every node that checks the accusation fetches it once.
//
//   mismatch   the accuser holds a reveal of the hop that matches the commitment and recomputes to
//              something else (the check of recompute.ts failed conclusively)
//   withhold   the producer did not reveal the hop within the deadline (2 tries)
//
// Bytes: compact JSON in a fixed key order {v, kind, accuser, commitment (base64 of the signed
// bytes), time, sig}; `sig` (base64) is the accuser's libp2p signature over
// "layerswarm/accusation/v1" 0x00 | the same JSON without `sig`, so an accusation proves its author
// outside gossipsub too (gossipsub's own signature binds it to the publisher: `from` must be the accuser).
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { utf8ToBytes } from '@noble/hashes/utils.js'
import { base64 } from 'multiformats/bases/base64'
import { MAX_SIGNED_COMMITMENT_BYTES } from './commitment.ts'
import { AccusationMalformedError } from './errors.ts'

export type AccusationKind = 'mismatch' | 'withhold'

export interface Accusation {
  readonly kind: AccusationKind
  readonly accuser: string
  /** The producer's signed commitment bytes. */
  readonly commitment: Uint8Array
  /** ms since the epoch, the accuser's clock (informative). */
  readonly time: number
}

/** Largest accusation accepted, bytes. */
export const MAX_ACCUSATION_BYTES = 2048
const DOMAIN = utf8ToBytes('layerswarm/accusation/v1\0')
const KEYS = ['v', 'kind', 'accuser', 'commitment', 'time', 'sig']
const PEER_RE = /^[A-Za-z0-9]{1,128}$/

/** The gossip topic of a run's accusations. */
export function evidenceTopic (runId: string): string {
  return `/layerswarm/${runId}/evidence/1.0.0`
}

function body (a: Accusation): string {
  return JSON.stringify({ v: 1, kind: a.kind, accuser: a.accuser, commitment: base64.baseEncode(a.commitment), time: a.time })
}

function signedBytes (a: Accusation): Uint8Array {
  const b = utf8ToBytes(body(a))
  const out = new Uint8Array(DOMAIN.length + b.length)
  out.set(DOMAIN, 0)
  out.set(b, DOMAIN.length)
  return out
}

/** The accusation's bytes, signed with the accuser's key (whose peer id must be `a.accuser`). */
export async function signAccusation (a: Accusation, key: PrivateKey): Promise<Uint8Array> {
  if (peerIdFromPrivateKey(key).toString() !== a.accuser) throw new AccusationMalformedError('the key is not the accuser\'s')
  const sig = await key.sign(signedBytes(a))
  const b = body(a)
  return utf8ToBytes(`${b.slice(0, -1)},"sig":"${base64.baseEncode(sig)}"}`)
}

/** Parses and checks an accusation (format, sizes, the accuser's signature). AccusationMalformedError otherwise. */
export async function verifyAccusation (bytes: Uint8Array): Promise<Accusation> {
  const bad = (m: string): never => { throw new AccusationMalformedError(m) }
  if (bytes.byteLength > MAX_ACCUSATION_BYTES) bad(`${bytes.byteLength} bytes, more than ${MAX_ACCUSATION_BYTES}`)
  let o: Record<string, unknown> = {}
  try {
    o = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    bad('not UTF-8 JSON')
  }
  if (o == null || typeof o !== 'object' || Array.isArray(o)) bad('not an object')
  const keys = Object.keys(o)
  if (keys.length !== KEYS.length || keys.some((k, i) => k !== KEYS[i])) bad(`keys must be ${KEYS.join(', ')} in that order`)
  if (o.v !== 1) bad(`unsupported version ${String(o.v)}`)
  if (o.kind !== 'mismatch' && o.kind !== 'withhold') bad(`unknown kind ${String(o.kind)}`)
  if (typeof o.accuser !== 'string' || !PEER_RE.test(o.accuser)) bad('bad accuser')
  if (!Number.isSafeInteger(o.time) || (o.time as number) < 0) bad('bad time')
  const b64 = (v: unknown, what: string, max: number): Uint8Array => {
    if (typeof v !== 'string' || v.length === 0 || v.length > Math.ceil(max / 3) * 4) bad(`bad ${what}`)
    try {
      return base64.baseDecode(v as string)
    } catch {
      return bad(`${what} is not base64`)
    }
  }
  const a: Accusation = { kind: o.kind as AccusationKind, accuser: o.accuser as string, commitment: b64(o.commitment, 'commitment', MAX_SIGNED_COMMITMENT_BYTES), time: o.time as number }
  const sig = b64(o.sig, 'signature', 128)
  let key
  try {
    key = peerIdFromString(a.accuser).publicKey
  } catch {}
  if (key == null) bad('the accuser\'s peer id embeds no public key')
  // one byte form: what was signed must re-encode to exactly these bytes
  const canonical = utf8ToBytes(`${body(a).slice(0, -1)},"sig":"${o.sig as string}"}`)
  if (canonical.length !== bytes.length || canonical.some((x, i) => x !== bytes[i])) bad('not in canonical form')
  let ok = false
  try {
    ok = await key!.verify(signedBytes(a), sig)
  } catch {}
  if (!ok) bad('the accuser\'s signature does not verify')
  return a
}
