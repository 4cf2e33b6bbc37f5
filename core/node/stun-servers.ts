// STUN servers for WebRTC hole punching (core/node/webrtc-transport.ts). ICE needs a server-reflexive
// candidate (the public address and port a home router maps a node's UDP socket to), and only a STUN
// server can tell a node what that is. Given as ICE server URLs (RFC 7064): stun:HOST[:PORT].
import { ConfigError } from '../errors.ts'

/**
 * Used on internet (non-LAN) networks whose profile names none: public servers that browsers' WebRTC
 * apps use too (Google's and Cloudflare's). A STUN request reveals only the node's public address.
 */
export const DEFAULT_STUN_SERVERS: readonly string[] = Object.freeze(['stun:stun.l.google.com:19302', 'stun:stun.cloudflare.com:3478'])

/** A STUN server address that is not stun:HOST[:PORT]. */
export class InvalidStunServerError extends ConfigError {
  readonly server: string
  constructor (server: string, where: string, reason: string) {
    super(`invalid STUN server ${JSON.stringify(server)} in ${where}: ${reason}; expected stun:HOST[:PORT], e.g. stun:stun.l.google.com:19302 or stun:203.0.113.7:3478`)
    this.server = server
  }
}

const HOST_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/
const IPV6_RE = /^\[[0-9A-Fa-f:.]+\]$/

/** Checks one stun:HOST[:PORT] URL and returns it unchanged. */
export function parseStunServer (url: unknown, where: string): string {
  if (typeof url !== 'string') throw new InvalidStunServerError(String(url), where, 'not a string')
  const m = /^stun:(.+)$/.exec(url)
  if (m == null) throw new InvalidStunServerError(url, where, 'it must start with "stun:"')
  let host = m[1]
  let port: string | undefined
  const hp = /^(\[[^\]]*\]|[^:]*)(?::([^:]*))?$/.exec(host)
  if (hp == null) throw new InvalidStunServerError(url, where, 'HOST[:PORT] does not parse')
  host = hp[1]
  port = hp[2]
  if (!HOST_RE.test(host) && !IPV6_RE.test(host)) throw new InvalidStunServerError(url, where, `"${host}" is not a host name or IP address`)
  if (port != null && (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535)) {
    throw new InvalidStunServerError(url, where, `port "${port}" is not an integer in 1..65535`)
  }
  return url
}

export function parseStunServers (urls: readonly unknown[], where: string): string[] {
  return urls.map(u => parseStunServer(u, where))
}
