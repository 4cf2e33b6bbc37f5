// Where the dashboard listens: `--dashboard` alone means loopback on the default port, so a page
// showing peer ids and addresses is never served to the network unless the user names a host.
import { isIP } from 'node:net'
import { ConfigError, LayerswarmError } from '../errors.ts'

export const DEFAULT_DASHBOARD_HOST = '127.0.0.1'
export const DEFAULT_DASHBOARD_PORT = 7070

export interface DashboardAddress {
  readonly host: string
  /** 0: any free port (the URL startDashboard returns names the one taken). */
  readonly port: number
}

/** The dashboard's port is taken or the host is not an address of this machine. */
export class DashboardListenError extends LayerswarmError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_DASHBOARD_LISTEN', message, options)
  }
}

const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/

/**
 * Parses a `--dashboard` value: `true` (flag without a value) -> 127.0.0.1:7070; `PORT`; `HOST:PORT`;
 * `[IPv6]:PORT`. undefined/false -> undefined (no dashboard). Anything else is a ConfigError (exit 2).
 */
export function parseDashboardAddress (value: string | boolean | undefined, flag = '--dashboard'): DashboardAddress | undefined {
  if (value === undefined || value === false) return undefined
  if (value === true) return { host: DEFAULT_DASHBOARD_HOST, port: DEFAULT_DASHBOARD_PORT }
  const text = value.trim()
  const fix = `give HOST:PORT (e.g. 127.0.0.1:${DEFAULT_DASHBOARD_PORT}), a port alone, or the flag without a value`
  if (text === '') throw new ConfigError(`${flag} is empty: ${fix}`)
  let host = DEFAULT_DASHBOARD_HOST
  let portText = text
  const v6 = /^\[([^\]]+)\]:(.*)$/.exec(text)
  if (v6 != null) {
    if (isIP(v6[1]) !== 6) throw new ConfigError(`${flag} ${text}: "${v6[1]}" is not an IPv6 address; ${fix}`)
    host = v6[1]
    portText = v6[2]
  } else if (text.includes(':')) {
    const i = text.lastIndexOf(':')
    host = text.slice(0, i)
    portText = text.slice(i + 1)
    if (host.includes(':')) throw new ConfigError(`${flag} ${text}: write an IPv6 host in brackets, [::1]:${DEFAULT_DASHBOARD_PORT}`)
    if (host === '' || (isIP(host) === 0 && !HOSTNAME.test(host))) throw new ConfigError(`${flag} ${text}: "${host}" is not a host name or IP address; ${fix}`)
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw new ConfigError(`${flag} ${text}: the port must be an integer in 0..65535; ${fix}`)
  return { host, port: Number(portText) }
}

/** True for addresses only this machine reaches. */
export function isLoopbackHost (host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host)
}
