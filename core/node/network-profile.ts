// Named networks. A profile (JSON) gives the network's name, bootstrap addresses, protocol prefix,
// default listen addresses, whether private/loopback addresses are kept in the DHT (lan), and an
// optional pre-shared key (inline swarm.key text or a path to one, relative to the profile file), and
// the STUN servers WebRTC hole punching asks (core/node/stun-servers.ts; default: public ones).
// Built-in profiles live in ./networks/*.json; `--network <file>` loads any other.
import { readFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { NetworkProfileError } from './node-errors.ts'
import { parseMultiaddr } from './multiaddrs.ts'
import { isSwarmKeyText, parseSwarmKey } from './swarm-key.ts'
import { parseStunServers } from './stun-servers.ts'

export interface NetworkProfile {
  readonly name: string
  readonly description?: string
  /** Every protocol id of this network starts with it, e.g. '/layerswarm/local' -> '/layerswarm/local/kad/1.0.0'. */
  readonly protocolPrefix: string
  readonly bootstrap: readonly string[]
  /** Default listen addresses (flags override). */
  readonly listen: readonly string[]
  /** Keep private and loopback addresses in the DHT (loopback and LAN networks). */
  readonly lan: boolean
  /** Pre-shared key in canonical swarm.key bytes; absent for an open network. */
  readonly psk?: Uint8Array
  /** STUN servers (stun:HOST[:PORT]) for WebRTC; absent: createNode's default (DEFAULT_STUN_SERVERS). */
  readonly stun?: readonly string[]
  /** Where the profile came from ('built-in local' or a file path). */
  readonly source: string
}

export const BUILTIN_NETWORKS = ['local', 'testnet'] as const

const FIELDS = new Set(['name', 'description', 'protocolPrefix', 'bootstrap', 'listen', 'lan', 'psk', 'stun'])
const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/
const PREFIX_RE = /^(\/[A-Za-z0-9._-]+)+$/
const DEFAULT_LISTEN = ['/ip4/0.0.0.0/tcp/0', '/ip4/0.0.0.0/tcp/0/ws']

const builtinDir = resolve(dirname(fileURLToPath(import.meta.url)), 'networks')

/** Loads a built-in network by name, or a profile file by path. */
export async function loadNetworkProfile (nameOrPath: string, cwd = process.cwd()): Promise<NetworkProfile> {
  if ((BUILTIN_NETWORKS as readonly string[]).includes(nameOrPath)) {
    const file = resolve(builtinDir, `${nameOrPath}.json`)
    return await parseNetworkProfile(await readFile(file, 'utf8'), `built-in ${nameOrPath}`, builtinDir)
  }
  const file = resolve(cwd, nameOrPath)
  if (!existsSync(file)) {
    throw new NetworkProfileError(nameOrPath, `no such network: use ${BUILTIN_NETWORKS.join(' or ')}, or the path of a profile JSON file`)
  }
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err: any) {
    throw new NetworkProfileError(file, `cannot read it: ${err?.message}`, { cause: err })
  }
  return await parseNetworkProfile(text, file, dirname(file))
}

/** Validates profile JSON text. `baseDir` resolves a relative psk path. */
export async function parseNetworkProfile (text: string, source: string, baseDir: string): Promise<NetworkProfile> {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err: any) {
    throw new NetworkProfileError(source, `is not valid JSON (${err?.message}); fix the syntax`, { cause: err })
  }
  if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new NetworkProfileError(source, 'must be a JSON object like {"name": "mynet", "bootstrap": ["/ip4/.../p2p/..."]}')
  }
  const o = raw as Record<string, unknown>
  const unknown = Object.keys(o).filter(k => !FIELDS.has(k))
  if (unknown.length > 0) {
    throw new NetworkProfileError(source, `unknown field(s) ${unknown.join(', ')}; allowed: ${[...FIELDS].join(', ')}`)
  }
  if (typeof o.name !== 'string' || !NAME_RE.test(o.name)) {
    throw new NetworkProfileError(source, '"name" must be a lowercase name (letters, digits, . _ -), e.g. "mynet"')
  }
  const name = o.name
  const protocolPrefix = o.protocolPrefix ?? `/layerswarm/${name}`
  if (typeof protocolPrefix !== 'string' || !PREFIX_RE.test(protocolPrefix)) {
    throw new NetworkProfileError(source, '"protocolPrefix" must look like "/layerswarm/mynet" (no trailing slash)')
  }
  const bootstrap = stringList(o.bootstrap ?? [], 'bootstrap', source)
  bootstrap.forEach(a => parseMultiaddr(a, `"bootstrap" of network profile ${source}`))
  const listen = stringList(o.listen ?? DEFAULT_LISTEN, 'listen', source)
  listen.forEach(a => parseMultiaddr(a, `"listen" of network profile ${source}`))
  const stun = o.stun == null ? undefined : parseStunServers(stringList(o.stun, 'stun', source), `"stun" of network profile ${source}`)
  if (o.lan != null && typeof o.lan !== 'boolean') throw new NetworkProfileError(source, '"lan" must be true or false')
  if (o.description != null && typeof o.description !== 'string') throw new NetworkProfileError(source, '"description" must be a string')

  let psk: Uint8Array | undefined
  if (o.psk != null) {
    if (typeof o.psk !== 'string') throw new NetworkProfileError(source, '"psk" must be swarm.key text or the path of a swarm.key file')
    psk = await loadSwarmKey(o.psk, baseDir, `"psk" of network profile ${source}`)
  }
  return {
    name,
    description: o.description as string | undefined,
    protocolPrefix,
    bootstrap,
    listen,
    lan: o.lan === true,
    psk,
    ...(stun != null ? { stun } : {}),
    source
  }
}

/** Swarm key from inline swarm.key text or from a file path (relative to baseDir). */
export async function loadSwarmKey (textOrPath: string, baseDir: string, where: string): Promise<Uint8Array> {
  if (isSwarmKeyText(textOrPath)) return parseSwarmKey(textOrPath, where)
  const file = resolve(baseDir, textOrPath)
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err: any) {
    throw new NetworkProfileError(where, `cannot read the key file ${file} (${err?.code ?? err?.message}); give an existing swarm.key path`, { cause: err })
  }
  return parseSwarmKey(text, file)
}

function stringList (v: unknown, field: string, source: string): string[] {
  if (!Array.isArray(v) || v.some(x => typeof x !== 'string')) {
    throw new NetworkProfileError(source, `"${field}" must be an array of ${field === 'stun' ? 'stun:HOST[:PORT]' : 'multiaddr'} strings`)
  }
  return v as string[]
}
