// Pre-shared keys for private swarms, in the swarm.key format of @libp2p/pnet (and go-ipfs):
//   /key/swarm/psk/1.0.0/
//   /base16/
//   <64 hex digits>
// Validated here so a bad key is a clear ConfigError at start, not a failed handshake later.
import { randomBytes } from 'node:crypto'
import { SwarmKeyError } from './node-errors.ts'

const TAG = '/key/swarm/psk/1.0.0/'
const CODEC = '/base16/'

export function isSwarmKeyText (text: string): boolean {
  return text.trimStart().startsWith('/key/swarm/')
}

/** Parses swarm.key text; returns the canonical swarm.key bytes that `preSharedKey({ psk })` takes. */
export function parseSwarmKey (text: string, source: string): Uint8Array {
  const lines = text.split(/\r\n|\r|\n/).map(l => l.trim()).filter(l => l !== '')
  if (lines.length !== 3) throw new SwarmKeyError(source, `has ${lines.length} non-empty lines, not 3`)
  if (lines[0] !== TAG) throw new SwarmKeyError(source, `first line is ${JSON.stringify(lines[0])}, not ${JSON.stringify(TAG)}`)
  if (lines[1] !== CODEC) throw new SwarmKeyError(source, `second line is ${JSON.stringify(lines[1])}; only ${CODEC} is supported`)
  if (!/^[0-9a-fA-F]{64}$/.test(lines[2])) throw new SwarmKeyError(source, 'third line must be 64 hex digits (32 bytes)')
  return new TextEncoder().encode(`${TAG}\n${CODEC}\n${lines[2].toLowerCase()}`)
}

/** A fresh random key in swarm.key format (text). */
export function generateSwarmKey (): string {
  return `${TAG}\n${CODEC}\n${randomBytes(32).toString('hex')}\n`
}
