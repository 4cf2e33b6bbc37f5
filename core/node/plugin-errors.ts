// Typed errors of the plugin host, one class per condition. Problems with what the user asked for
// (unknown plugin, bad module, missing or circular dependency, conflicting providers) extend
// ConfigError so the CLI exits 2; a plugin failing at run time (register/start/stop throws) is a
// plain LayerswarmError (exit 1). Each error names the plugin(s) involved.
import { ConfigError, LayerswarmError } from '../errors.ts'

/** A spec names no built-in plugin, no existing file and no resolvable package. */
export class PluginNotFoundError extends ConfigError {
  override readonly code = 'ERR_PLUGIN_NOT_FOUND'
  constructor (readonly spec: string, detail: string, options?: { cause?: unknown }) {
    super(`plugin "${spec}" not found: ${detail}`, options)
  }
}

/** The module was found but importing it failed (syntax error, a throwing top level, ...). */
export class PluginLoadError extends ConfigError {
  override readonly code = 'ERR_PLUGIN_LOAD'
  constructor (readonly spec: string, cause: unknown) {
    super(`plugin module "${spec}" failed to load: ${messageOf(cause)}`, { cause })
  }
}

/** The module's default export is missing or is not a valid Plugin. */
export class InvalidPluginError extends ConfigError {
  override readonly code = 'ERR_PLUGIN_INVALID'
  constructor (readonly spec: string, readonly problems: readonly string[]) {
    super(`plugin module "${spec}" has no valid plugin default export: ${problems.join('; ')}`)
  }
}

/** Two different plugins share one name. */
export class DuplicatePluginError extends ConfigError {
  override readonly code = 'ERR_PLUGIN_DUPLICATE'
  constructor (readonly plugin: string, readonly sources: readonly string[]) {
    super(`two plugins are named "${plugin}" (from ${sources.map(s => `"${s}"`).join(' and ')}); plugin names must be unique`)
  }
}

/** A plugin requires a token that neither core nor any loaded plugin provides. */
export class MissingDependencyError extends ConfigError {
  override readonly code = 'ERR_PLUGIN_MISSING_DEPENDENCY'
  constructor (readonly plugin: string, readonly token: string, hint = '') {
    super(`plugin "${plugin}" requires "${token}", which neither core nor any loaded plugin provides${hint}`)
  }
}

/** Plugins require each other in a cycle; `cycle` lists plugin names, first repeated last. */
export class CircularDependencyError extends ConfigError {
  override readonly code = 'ERR_PLUGIN_CIRCULAR_DEPENDENCY'
  constructor (readonly cycle: readonly string[]) {
    super(`plugins depend on each other in a cycle: ${cycle.join(' -> ')}`)
  }
}

/** Several plugins provide a single token and no choice picks one. */
export class ConflictingProvidersError extends ConfigError {
  override readonly code = 'ERR_PLUGIN_CONFLICT'
  /** `how`: how the caller's user chooses (e.g. a CLI flag); default: the plugin host's `choices` option. */
  constructor (readonly token: string, readonly providers: readonly string[], how?: string) {
    super(`plugins ${providers.map(p => `"${p}"`).join(', ')} all provide "${token}", which takes exactly one provider; ${how ?? `choose one (e.g. choices["${token}"] = "${providers[0]}")`}`)
  }
}

/** A choice names a plugin that is not loaded or does not provide the token, or targets a multi token. */
export class InvalidChoiceError extends ConfigError {
  override readonly code = 'ERR_PLUGIN_CHOICE'
  constructor (readonly token: string, readonly choice: string, detail: string) {
    super(`invalid choice "${choice}" for "${token}": ${detail}`)
  }
}

/**
 * A --backend value (flag, LAYERSWARM_BACKEND or a config file's "backend") names no usable compute
 * backend: nothing to load there, a broken module, or a plugin that binds no ComputeBackend.
 */
export class BackendChoiceError extends ConfigError {
  override readonly code = 'ERR_BACKEND_CHOICE'
  constructor (readonly value: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
  }
}

/** A plugin's register() or start() threw, or register() did not bind a token it declared. */
export class PluginStartError extends LayerswarmError {
  constructor (readonly plugin: string, readonly phase: 'register' | 'start', cause: unknown) {
    super('ERR_PLUGIN_START', `plugin "${plugin}" failed in ${phase}(): ${messageOf(cause)}`, { cause })
  }
}

/** One or more plugins threw from stop(); every plugin was still asked to stop. */
export class PluginStopError extends LayerswarmError {
  constructor (readonly failures: ReadonlyArray<{ plugin: string, error: unknown }>) {
    super('ERR_PLUGIN_STOP', `plugins failed to stop: ${failures.map(f => `"${f.plugin}" (${messageOf(f.error)})`).join(', ')}`,
      { cause: failures[0]?.error })
  }
}

/** A host method was called in the wrong lifecycle state (e.g. load() after start()). */
export class PluginHostStateError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_PLUGIN_HOST_STATE', message)
  }
}

function messageOf (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
