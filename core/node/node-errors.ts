// Typed errors of the node core (identity, data dir, networks, control endpoint). User-input errors
// extend ConfigError so the CLI exits 2 on them; runtime conditions extend LayerswarmError (exit 1).
import { ConfigError, LayerswarmError } from '../errors.ts'

/** The identity key file exists but does not hold a libp2p private key. */
export class IdentityKeyError extends LayerswarmError {
  readonly file: string
  constructor (file: string, options?: { cause?: unknown }) {
    super('ERR_IDENTITY_KEY', `identity key file ${file} is corrupted or is not a libp2p private key; ` +
      'restore it from a backup, or move it away to create a new identity (the peer id will change)', options)
    this.file = file
  }
}

/** The data dir cannot be created or used (permissions, a file in the way). */
export class DataDirError extends ConfigError {
  readonly dir: string
  constructor (dir: string, reason: string, options?: { cause?: unknown }) {
    super(`data dir ${dir} cannot be used: ${reason}; pass a writable directory with --data-dir`, options)
    this.dir = dir
  }
}

/** Another live node holds the data dir's lock. */
export class DataDirLockedError extends LayerswarmError {
  readonly dir: string
  readonly pid: number
  constructor (dir: string, pid: number) {
    super('ERR_DATA_DIR_LOCKED', `data dir ${dir} is in use by a running node (pid ${pid}); ` +
      'stop that node or start this one with another --data-dir')
    this.dir = dir
    this.pid = pid
  }
}

/** A multiaddr given by the user (flag, env, config, profile) does not parse. */
export class InvalidMultiaddrError extends ConfigError {
  readonly addr: string
  constructor (addr: string, where: string, options?: { cause?: unknown }) {
    super(`invalid multiaddr ${JSON.stringify(addr)} in ${where}: ${(options?.cause as Error)?.message ?? 'does not parse'}; ` +
      'expected e.g. /ip4/127.0.0.1/tcp/4001 or /ip4/1.2.3.4/tcp/4001/p2p/12D3KooW...', options)
    this.addr = addr
  }
}

/** A network profile is missing, is not JSON, or has bad fields. */
export class NetworkProfileError extends ConfigError {
  readonly source: string
  constructor (source: string, reason: string, options?: { cause?: unknown }) {
    super(`network profile ${source}: ${reason}`, options)
    this.source = source
  }
}

/** A pre-shared key (swarm.key) is malformed. */
export class SwarmKeyError extends ConfigError {
  constructor (source: string, reason: string) {
    super(`pre-shared key ${source}: ${reason}; expected the swarm.key format: ` +
      '"/key/swarm/psk/1.0.0/", "/base16/", then 64 hex digits, one per line (make one with `layerswarm keys --new-swarm-key`)')
  }
}

/** start() on a started node, or use of a stopped one. */
export class NodeStateError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_NODE_STATE', message)
  }
}

/** No node answers on the data dir's control endpoint. */
export class NodeNotRunningError extends LayerswarmError {
  readonly dir: string
  constructor (dir: string, reason: string, options?: { cause?: unknown }) {
    super('ERR_NODE_NOT_RUNNING', `no node is running on data dir ${dir} (${reason}); start one with ` +
      `\`layerswarm start --data-dir ${dir}\``, options)
    this.dir = dir
  }
}

/** The control endpoint answered with something that is not a status. */
export class ControlEndpointError extends LayerswarmError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_CONTROL_ENDPOINT', message, options)
  }
}
