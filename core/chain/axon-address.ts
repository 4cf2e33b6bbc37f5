// Subtensor stores an axon's IP as a u128 with a separate ip_type (4 or 6): an IPv4 address is its
// 32-bit value, an IPv6 address its full 128 bits. These helpers convert between that and text, and
// tell the addresses the runtime refuses to serve (loopback, unspecified) before a fee is spent.
import { isIP } from 'node:net'
import { ConfigError } from '../errors.ts'

function parseV4 (ip: string): bigint {
  const parts = ip.split('.')
  if (parts.length !== 4 || parts.some(p => !/^\d{1,3}$/.test(p) || Number(p) > 255)) throw new ConfigError(`not an IPv4 address: ${ip}`)
  return parts.reduce((acc, p) => (acc << 8n) | BigInt(Number(p)), 0n)
}

function parseV6 (ip: string): bigint {
  let text = ip
  // an embedded IPv4 tail (::ffff:1.2.3.4) becomes two hex groups
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (v4 != null) {
    const n = parseV4(v4[1])
    text = text.slice(0, -v4[1].length) + `${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`
  }
  const halves = text.split('::')
  if (halves.length > 2) throw new ConfigError(`not an IPv6 address: ${ip}`)
  const head = halves[0] === '' ? [] : halves[0].split(':')
  const tail = halves.length === 2 && halves[1] !== '' ? halves[1].split(':') : []
  const missing = 8 - head.length - tail.length
  if ((halves.length === 2 && missing < 1) || (halves.length === 1 && missing !== 0)) throw new ConfigError(`not an IPv6 address: ${ip}`)
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail]
  return groups.reduce((acc, g) => {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw new ConfigError(`not an IPv6 address: ${ip}`)
    return (acc << 16n) | BigInt(parseInt(g, 16))
  }, 0n)
}

/** The u128 value and ip_type subtensor's serve_axon takes for an IPv4 or IPv6 text address. */
export function ipToU128 (ip: string): { value: bigint, ipType: 4 | 6 } {
  const bare = ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip
  const kind = isIP(bare)
  if (kind === 4) return { value: parseV4(bare), ipType: 4 }
  if (kind === 6) return { value: parseV6(bare), ipType: 6 }
  throw new ConfigError(`not an IP address: ${ip}`)
}

/** Text of a stored axon IP: dotted IPv4, or RFC 5952 IPv6 (lower case, the longest zero run as ::). */
export function u128ToIp (value: bigint, ipType: number): string {
  if (ipType === 4) {
    if (value < 0n || value > 0xffffffffn) throw new RangeError(`IPv4 value out of range: ${value}`)
    return [24n, 16n, 8n, 0n].map(s => String((value >> s) & 0xffn)).join('.')
  }
  if (ipType !== 6) throw new RangeError(`unknown ip type ${ipType}`)
  if (value < 0n || value >= 1n << 128n) throw new RangeError(`IPv6 value out of range: ${value}`)
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn))
  // RFC 5952: compress the longest run of two or more zero groups (the first such run on a tie)
  let best = -1
  let bestLen = 1
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) { i++; continue }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLen) { best = i; bestLen = j - i }
    i = j
  }
  const hex = groups.map(g => g.toString(16))
  if (best < 0) return hex.join(':')
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`
}

/** True for addresses no other host can dial: 127/8, ::1, 0.0.0.0, :: (and IPv4-mapped loopback). */
export function isUnservableIp (ip: string): boolean {
  const { value, ipType } = ipToU128(ip)
  if (ipType === 4) return value === 0n || (value >> 24n) === 127n
  if (value === 0n || value === 1n) return true
  // ::ffff:127.x.y.z and ::ffff:0.0.0.0
  if ((value >> 32n) === 0xffffn) return ((value >> 24n) & 0xffn) === 127n || (value & 0xffffffffn) === 0n
  return false
}

/** Splits "IP:PORT" or "[IPv6]:PORT" into its parts. */
export function parseHostPort (address: string): { ip: string, port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(address) ?? /^([^:]+):(\d+)$/.exec(address)
  if (m == null) throw new ConfigError(`address must be IP:PORT or [IPv6]:PORT, got ${JSON.stringify(address)}`)
  const port = Number(m[2])
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ConfigError(`port out of range in ${address}`)
  ipToU128(m[1])
  return { ip: m[1], port }
}
