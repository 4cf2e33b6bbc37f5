// Content keys for the DHT: a name (e.g. an averaging group of a run and stage) hashed into a CID
// that nodes provide and others look up with findProviders.
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'

const RAW = 0x55

/** CIDv1 (raw, sha2-256) of the UTF-8 bytes of `name`. */
export async function dhtKey (name: string): Promise<CID> {
  return CID.createV1(RAW, await sha256.digest(new TextEncoder().encode(name)))
}
