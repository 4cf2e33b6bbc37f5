// Where the Prometheus endpoint listens: `--metrics HOST:PORT` (or just PORT). A bare port binds
// loopback only: metrics name peers and the run, and an operator who wants them on the network says
// so with a host. Bad text is a ConfigError (exit 2) that shows the accepted forms.
import { isIP } from 'node:net'
import { ConfigError } from '../errors.ts'

export interface MetricsAddress {
  /** An IP literal (IPv6 without brackets) or a host name. */
  readonly host: string
  /** 0: any free port (the server's url says which). */
  readonly port: number
}

export const DEFAULT_METRICS_HOST = '127.0.0.1'

/** A `--metrics` value that is not PORT, HOST:PORT or [IPv6]:PORT, or a port that cannot be bound. */
export class MetricsAddressError extends ConfigError {
  override readonly code = 'ERR_METRICS_ADDRESS'
}

const HOSTNAME_RE = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/

/** Parses `text` (PORT, HOST:PORT, [IPv6]:PORT); `where` names its source in the error (--metrics, an env var, a config key). */
export function parseMetricsAddress (text: string, where = '--metrics'): MetricsAddress {
  const bad = (why: string): MetricsAddressError => new MetricsAddressError(
    `${where} ${JSON.stringify(text)}: ${why}; use PORT (loopback), HOST:PORT or [IPv6]:PORT, e.g. 127.0.0.1:9464`)
  const t = text.trim()
  if (t === '') throw bad('empty')
  let host = DEFAULT_METRICS_HOST
  let portText = t
  const v6 = /^\[([^\]]+)\]:(.*)$/.exec(t)
  if (v6 != null) {
    host = v6[1]
    portText = v6[2]
    if (isIP(host) !== 6) throw bad(`${host} is not an IPv6 address`)
  } else if (t.includes(':')) {
    const i = t.lastIndexOf(':')
    host = t.slice(0, i)
    portText = t.slice(i + 1)
    if (host.includes(':')) throw bad('an IPv6 host goes in brackets')
    if (isIP(host) === 0 && !HOSTNAME_RE.test(host)) throw bad(`${JSON.stringify(host)} is not an IP address or host name`)
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw bad(`port ${JSON.stringify(portText)} is not an integer in 0..65535`)
  return { host, port: Number(portText) }
}

/** host:port as a URL authority (IPv6 in brackets). */
export function formatHostPort (host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`
}
