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
  /**
   * Optional stop (reverse order), with the context register() and start() got: resolve what this
   * registration created from `ctx.container` (one module may serve several nodes in a process, so
   * module-level state would mix them up). Must not throw for an already stopped plugin.
   */
  stop?(ctx: PluginContext): void | Promise<void>
}

/**
 * Keeps `fn` (freeing what this registration created) in the node's container under `token`, and
 * runs it once: at the plugin's stop (`release(ctx, token)`) or when the node's signal aborts,
 * whichever comes first.
 */
export function registerRelease (ctx: PluginContext, token: Token, fn: () => Promise<void>): void {
  let done: Promise<void> | undefined
  const once = async (): Promise<void> => { done ??= fn(); await done }
  ctx.container.registerInstance(token, once)
  ctx.signal.addEventListener('abort', () => { void once().catch(() => {}) }, { once: true })
}

/** Runs the release registerRelease kept under `token` in this node's container (nothing if none). */
export async function release (ctx: PluginContext, token: Token): Promise<void> {
  if (!ctx.container.isRegistered(token, true)) return
  await ctx.container.resolve<() => Promise<void>>(token)()
}

/** Small helper so plugin modules get type checking: `export default definePlugin({...})`. */
export function definePlugin<P extends Plugin> (plugin: P): P {
  return plugin
}
