// Plugin contract. A plugin is a module whose default export is a `Plugin`. It binds its
// implementation into the node's tsyringe container under tokens (see tokens.ts).
import type { DependencyContainer } from 'tsyringe'
import type { Logger } from './logger.ts'

export type PluginKind = 'backend' | 'codec' | 'scheduler' | 'service'

/** A container token: a string constant from tokens.ts, or a plugin's own string. */
export type Token = string

export interface PluginContext {
  /** The node's container: core bindings (Tokens.Logger, Tokens.NodeConfig, later Tokens.Libp2p) plus what earlier plugins registered. */
  readonly container: DependencyContainer
  /** Options for this plugin only: config file `plugins.<name>` merged with flags. */
  readonly options: Readonly<Record<string, unknown>>
  readonly logger: Logger
  readonly signal: AbortSignal
}

export interface Plugin {
  readonly name: string
  readonly kind: PluginKind
  readonly version?: string
  readonly description?: string
  /** Tokens this plugin binds in `register`. */
  readonly provides: readonly Token[]
  /** Tokens that must be bound (by core or another plugin) before this plugin registers. */
  readonly requires?: readonly Token[]
  /** Bind implementations into the container. Called in dependency order. */
  register(ctx: PluginContext): void | Promise<void>
  /** Optional start after every plugin registered (dependency order). */
  start?(ctx: PluginContext): void | Promise<void>
  /** Optional stop (reverse order). Must not throw for an already stopped plugin. */
  stop?(): void | Promise<void>
}

/** Small helper so plugin modules get type checking: `export default definePlugin({...})`. */
export function definePlugin<P extends Plugin> (plugin: P): P {
  return plugin
}
