// The plugin host: loads plugin modules (through the registry), checks them, orders them by what they
// require and provide, then registers and starts them into one tsyringe container; stops them in
// reverse. Any failure while starting stops what was already brought up before the error is thrown,
// so a failed start leaves nothing running.
import '../polyfills.ts'
import { container as rootContainer, type DependencyContainer } from 'tsyringe'
import { MultiTokens } from '../contracts/tokens.ts'
import type { Plugin, PluginContext, PluginKind, Token } from '../contracts/plugin.ts'
import type { Logger } from '../contracts/logger.ts'
import { AbortError } from '../errors.ts'
import { silentLogger } from '../logger.ts'
import { deadline } from '../timers.ts'
import { importPluginModule, isPathSpec, pathSpecFile } from './plugin-registry.ts'
import {
  CircularDependencyError, ConflictingProvidersError, DuplicatePluginError, InvalidChoiceError, InvalidPluginError,
  MissingDependencyError, PluginHostStateError, PluginStartError, PluginStopError
} from './plugin-errors.ts'

export interface PluginHostOptions {
  /** Container to register into; default: a child of tsyringe's root container. */
  container?: DependencyContainer
  logger?: Logger
  /** token -> plugin name, when several loaded plugins provide one single token. */
  choices?: Record<string, string>
  /**
   * Plugin options (PluginContext.options), keyed by plugin name or by the spec a plugin was loaded
   * from (a path key matches the file it names, relative to cwd); a name's keys win over a spec's.
   */
  pluginOptions?: Record<string, Record<string, unknown>>
  /**
   * token -> how the user of this host chooses one of these providers (e.g. a CLI flag), for the
   * message of a conflict; default: the `choices` option.
   */
  choiceHints?: Record<string, ChoiceHint>
  /** Base for relative plugin paths and package resolution; default process.cwd(). */
  cwd?: string
  /** Aborting it aborts start() and the signal every plugin receives. */
  signal?: AbortSignal
}

const KINDS = ['backend', 'codec', 'scheduler', 'service'] as const satisfies readonly PluginKind[]
// Compile-time check that KINDS lists every PluginKind of the contract.
const everyKindListed: Exclude<PluginKind, typeof KINDS[number]> extends never ? true : never = true
void everyKindListed

/** Says how to choose among providers, given their names and the specs they were loaded by. */
export type ChoiceHint = (providers: ReadonlyArray<{ name: string, spec?: string }>) => string

interface Entry {
  readonly plugin: Plugin
  /** Where the plugin came from: the spec and resolved file, or '<object>'. */
  readonly source: string
  /** The spec it was loaded by, and the file that resolved to (absent for built-ins and objects). */
  readonly spec?: string
  readonly file?: string
  ctx?: PluginContext
}

/** A plugin module imported and checked: its plugin, and the file it came from (undefined: built in). */
export interface ImportedPlugin {
  readonly plugin: Plugin
  readonly file?: string
}

/**
 * Import the module a spec names (plugin-registry.ts) and check its default export is a Plugin.
 * Throws PluginNotFoundError, PluginLoadError or InvalidPluginError.
 */
export async function importPlugin (spec: string, cwd: string = process.cwd()): Promise<ImportedPlugin> {
  const imported = await importPluginModule(spec, cwd)
  const plugin = validatePlugin(defaultExport(imported.module), spec)
  return imported.source === 'builtin' ? { plugin } : { plugin, file: imported.source }
}

type HostState = 'idle' | 'starting' | 'started' | 'stopping' | 'stopped' | 'failed'

export class PluginHost {
  readonly container: DependencyContainer
  private readonly log: Logger
  private readonly rootLogger: Logger
  private readonly choices: Readonly<Record<string, string>>
  private readonly pluginOptions: Readonly<Record<string, Record<string, unknown>>>
  private readonly choiceHints: Readonly<Record<string, ChoiceHint>>
  private readonly cwd: string
  /** Aborted by stop() or by the caller's signal; every PluginContext gets its signal. */
  private readonly controller = new AbortController()
  private readonly signal: AbortSignal
  private readonly loaded: Entry[] = []
  /** Plugins whose register() was entered, in order: exactly those stop() must reach. */
  private readonly entered: Entry[] = []
  private order: Entry[] | undefined
  private state: HostState = 'idle'
  private startPromise: Promise<void> | undefined
  private stopPromise: Promise<void> | undefined

  constructor (opts: PluginHostOptions = {}) {
    this.container = opts.container ?? rootContainer.createChildContainer()
    this.rootLogger = opts.logger ?? silentLogger
    this.log = this.rootLogger.forComponent('layerswarm:plugins')
    this.choices = { ...opts.choices }
    this.pluginOptions = { ...opts.pluginOptions }
    this.choiceHints = { ...opts.choiceHints }
    this.cwd = opts.cwd ?? process.cwd()
    this.signal = opts.signal == null ? this.controller.signal : deadline(undefined, opts.signal, this.controller.signal).signal
  }

  /**
   * Load plugins: built-in names ('backend-cpu'), file paths ('./my-plugin.js', absolute or relative
   * to cwd), npm package names, or Plugin objects. All-or-nothing: on any error none of this call's
   * plugins are added. Loading the same plugin object twice is a no-op; two plugins with one name fail.
   */
  async load (specs: ReadonlyArray<string | Plugin>): Promise<void> {
    this.assertState('idle', 'load()')
    const batch: Entry[] = []
    for (const spec of specs) {
      let entry: Entry
      if (typeof spec === 'string') {
        const { plugin, file } = await importPlugin(spec, this.cwd)
        entry = { plugin, source: file == null ? spec : `${spec} (${file})`, spec, file }
      } else {
        entry = { plugin: validatePlugin(spec, '<object>'), source: '<object>' }
      }
      const same = [...this.loaded, ...batch].find(e => e.plugin.name === entry.plugin.name)
      if (same != null) {
        if (same.plugin === entry.plugin) continue
        throw new DuplicatePluginError(entry.plugin.name, [same.source, entry.source])
      }
      batch.push(entry)
    }
    this.assertState('idle', 'load()')
    this.loaded.push(...batch)
    for (const e of batch) this.log.debug('loaded plugin', { plugin: e.plugin.name, kind: e.plugin.kind, source: e.source })
  }

  /**
   * Check the loaded set (choices, conflicts, dependencies, cycles) and return plugin names in start
   * order, without registering anything. start() runs the same checks.
   */
  plan (): string[] {
    return this.resolveOrder().map(e => e.plugin.name)
  }

  /** Validate, then register every plugin and then start every plugin, both in dependency order. */
  async start (): Promise<void> {
    this.assertState('idle', 'start()')
    this.state = 'starting'
    this.startPromise = this.bringUp()
    return await this.startPromise
  }

  /** Stop plugins in reverse start order. Idempotent; waits for an in-progress start to unwind. */
  async stop (): Promise<void> {
    if (this.stopPromise != null) return await this.stopPromise
    this.stopPromise = (async () => {
      this.controller.abort()
      if (this.state === 'starting') await this.startPromise?.catch(() => {})
      if (this.state !== 'started') {
        if (this.state === 'idle') this.state = 'stopped'
        return
      }
      this.state = 'stopping'
      const failures = await this.stopEntered()
      this.state = 'stopped'
      if (failures.length > 0) throw new PluginStopError(failures)
    })()
    return await this.stopPromise
  }

  /** Plugin names in start order once start() has ordered them, else in load order. */
  names (): string[] {
    return (this.order ?? this.loaded).map(e => e.plugin.name)
  }

  private async bringUp (): Promise<void> {
    try {
      this.order = this.resolveOrder()
      for (const entry of this.order) {
        this.throwIfAborted()
        entry.ctx = this.contextFor(entry)
        this.entered.push(entry)
        try {
          await entry.plugin.register(entry.ctx)
        } catch (err) {
          throw new PluginStartError(entry.plugin.name, 'register', err)
        }
        for (const token of entry.plugin.provides) {
          if (!this.container.isRegistered(token, true)) {
            throw new PluginStartError(entry.plugin.name, 'register', new Error(`it declares it provides "${token}" but did not register it`))
          }
        }
      }
      for (const entry of this.order) {
        this.throwIfAborted()
        try {
          await entry.plugin.start?.(entry.ctx as PluginContext)
        } catch (err) {
          throw new PluginStartError(entry.plugin.name, 'start', err)
        }
        this.log.info('started plugin', { plugin: entry.plugin.name, kind: entry.plugin.kind })
      }
      this.state = 'started'
    } catch (err) {
      this.state = 'failed'
      this.log.error('plugin start failed; stopping what was started', { error: (err as Error).message })
      await this.stopEntered()
      throw err
    }
  }

  /** Stop every plugin whose register() was entered, last first. A throwing stop() does not stop the rest. */
  private async stopEntered (): Promise<Array<{ plugin: string, error: unknown }>> {
    const failures: Array<{ plugin: string, error: unknown }> = []
    while (this.entered.length > 0) {
      const entry = this.entered.pop() as Entry
      try {
        await entry.plugin.stop?.(entry.ctx as PluginContext)
        this.log.debug('stopped plugin', { plugin: entry.plugin.name })
      } catch (error) {
        this.log.warn('plugin stop failed', { plugin: entry.plugin.name, error: (error as Error)?.message ?? String(error) })
        failures.push({ plugin: entry.plugin.name, error })
      }
    }
    return failures
  }

  private throwIfAborted (): void {
    if (this.signal.aborted) throw new AbortError('plugin start was aborted')
  }

  private assertState (expected: HostState, what: string): void {
    if (this.state !== expected) throw new PluginHostStateError(`${what} is not allowed once the plugin host is ${this.state}`)
  }

  private contextFor ({ plugin, spec, file }: Entry): PluginContext {
    return Object.freeze({
      container: this.container,
      options: Object.freeze({ ...this.optionsBySpec(spec, file), ...this.pluginOptions[plugin.name] }),
      logger: this.rootLogger.forComponent(`layerswarm:plugin:${plugin.name}`),
      signal: this.signal
    })
  }

  // A user knows a plugin loaded from a file by its path, not by the name inside it: options keyed
  // by that path (as given, or any other spelling of the same file) reach it too.
  private optionsBySpec (spec: string | undefined, file: string | undefined): Record<string, unknown> {
    if (spec == null) return {}
    let out: Record<string, unknown> = {}
    for (const [key, opts] of Object.entries(this.pluginOptions)) {
      const same = key === spec || (file != null && isPathSpec(key) && pathSpecFile(key, this.cwd) === file)
      if (same) out = { ...out, ...opts }
    }
    return out
  }

  /** Apply choices, reject conflicts and missing dependencies, and sort by dependency (load order breaks ties). */
  private resolveOrder (): Entry[] {
    const byName = new Map(this.loaded.map(e => [e.plugin.name, e]))
    const providersIn = (entries: Entry[]): Map<Token, Entry[]> => {
      const map = new Map<Token, Entry[]>()
      for (const e of entries) {
        for (const t of new Set(e.plugin.provides)) map.set(t, [...(map.get(t) ?? []), e])
      }
      return map
    }

    // Choices: the chosen provider stays, the other providers of that token are left out entirely.
    const allProviders = providersIn(this.loaded)
    const excludedBy = new Map<Entry, Token>()
    for (const [token, choice] of Object.entries(this.choices)) {
      const providers = allProviders.get(token) ?? []
      const names = providers.map(p => `"${p.plugin.name}"`).join(', ') || 'none'
      if (MultiTokens.has(token)) throw new InvalidChoiceError(token, choice, 'this token collects every provider, so there is nothing to choose')
      const chosen = byName.get(choice)
      if (chosen == null) throw new InvalidChoiceError(token, choice, `no plugin of that name is loaded (loaded providers: ${names})`)
      if (!providers.includes(chosen)) throw new InvalidChoiceError(token, choice, `that plugin does not provide it (loaded providers: ${names})`)
      for (const p of providers) if (p !== chosen) excludedBy.set(p, token)
    }
    for (const [token, choice] of Object.entries(this.choices)) {
      const chosen = byName.get(choice) as Entry
      const other = excludedBy.get(chosen)
      if (other != null) throw new InvalidChoiceError(token, choice, `the choice for "${other}" leaves that plugin out`)
    }
    const active = this.loaded.filter(e => !excludedBy.has(e))
    for (const e of excludedBy.keys()) this.log.info('plugin not chosen; leaving it out', { plugin: e.plugin.name, token: excludedBy.get(e) })

    const providers = providersIn(active)
    for (const [token, list] of providers) {
      if (list.length > 1 && !MultiTokens.has(token)) {
        const hint = this.choiceHints[token]?.(list.map(e => ({ name: e.plugin.name, spec: e.spec })))
        throw new ConflictingProvidersError(token, list.map(e => e.plugin.name), hint)
      }
    }

    // Edges: a plugin depends on every other active provider of each token it requires.
    const deps = new Map<Entry, Entry[]>()
    for (const e of active) {
      const list: Entry[] = []
      for (const token of e.plugin.requires ?? []) {
        const from = (providers.get(token) ?? []).filter(p => p !== e)
        if (from.length > 0) {
          for (const p of from) if (!list.includes(p)) list.push(p)
        } else if (!e.plugin.provides.includes(token) && !this.container.isRegistered(token, true)) {
          const left = [...excludedBy.keys()].find(x => x.plugin.provides.includes(token))
          const hint = left != null ? ` ("${left.plugin.name}" provides it but was left out by the choice for "${excludedBy.get(left)}")` : ''
          throw new MissingDependencyError(e.plugin.name, token, hint)
        }
      }
      deps.set(e, list)
    }

    // Depth-first topological sort; a back edge is a cycle, reported along the current path.
    const order: Entry[] = []
    const done = new Set<Entry>()
    const path: Entry[] = []
    const visit = (e: Entry): void => {
      if (done.has(e)) return
      const at = path.indexOf(e)
      if (at >= 0) throw new CircularDependencyError([...path.slice(at), e].map(x => x.plugin.name))
      path.push(e)
      for (const d of deps.get(e) ?? []) visit(d)
      path.pop()
      done.add(e)
      order.push(e)
    }
    for (const e of active) visit(e)
    return order
  }
}

/** A module's default export; unwraps one more `default` for CommonJS-compiled modules. */
function defaultExport (mod: unknown): unknown {
  const d = (mod as { default?: unknown } | null)?.default
  if (d != null && typeof d === 'object' && !('register' in d) && 'default' in d) return (d as { default: unknown }).default
  return d
}

/** Check that a value is a Plugin; throws InvalidPluginError listing every problem found. */
export function validatePlugin (value: unknown, spec: string): Plugin {
  if (value == null || typeof value !== 'object') {
    throw new InvalidPluginError(spec, [value === undefined ? 'there is no default export' : `the default export is ${value === null ? 'null' : typeof value}, not a plugin object`])
  }
  const p = value as Record<string, unknown>
  const problems: string[] = []
  const isTokenList = (v: unknown): boolean => Array.isArray(v) && v.every(t => typeof t === 'string' && t.length > 0)
  if (typeof p.name !== 'string' || p.name.trim() === '' || /\s/.test(p.name)) problems.push('"name" must be a non-empty string without spaces')
  if (!(KINDS as readonly unknown[]).includes(p.kind)) problems.push(`"kind" must be one of ${KINDS.join(', ')} (got ${JSON.stringify(p.kind)})`)
  if (!isTokenList(p.provides)) problems.push('"provides" must be an array of token strings')
  if (p.requires !== undefined && !isTokenList(p.requires)) problems.push('"requires" must be an array of token strings when given')
  if (typeof p.register !== 'function') problems.push('"register" must be a function')
  if (p.start !== undefined && typeof p.start !== 'function') problems.push('"start" must be a function when given')
  if (p.stop !== undefined && typeof p.stop !== 'function') problems.push('"stop" must be a function when given')
  for (const k of ['version', 'description']) {
    if (p[k] !== undefined && typeof p[k] !== 'string') problems.push(`"${k}" must be a string when given`)
  }
  if (problems.length > 0) throw new InvalidPluginError(spec === '<object>' && typeof p.name === 'string' ? `<object ${p.name}>` : spec, problems)
  return value as Plugin
}
