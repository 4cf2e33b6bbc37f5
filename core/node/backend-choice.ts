// What a --backend value stands for, in one place for every command that takes one (start, train
// --local, bench, sample, demo and its final evaluation): the plugin spec to load and the provider
// to choose for Tokens.ComputeBackend. A value is a short name ('cpu' -> the built-in 'backend-cpu'),
// a plugin name, a file path or a package name. A plugin host chooses providers and hands out
// options by plugin name, which a path does not tell: so the module is imported first and chosen by
// the name its plugin declares.
import type { ComputeBackend } from '../contracts/backend.ts'
import type { Logger } from '../contracts/logger.ts'
import { Tokens } from '../contracts/tokens.ts'
import { importPlugin, PluginHost, type ImportedPlugin } from './plugin-host.ts'
import { BackendChoiceError, PluginNotFoundError } from './plugin-errors.ts'
import { isBuiltinPlugin, isPathSpec } from './plugin-registry.ts'

export interface BackendChoice {
  /** The value as given: 'cpu', 'backend-webgpu', './my-backend.js', 'my-backend-package'. */
  readonly value: string
  /**
   * What to load: a built-in name, the absolute file of a path (the same file from any cwd, so it
   * can go to another process), or a package name.
   */
  readonly spec: string
  /** The name the plugin declares: the choice for Tokens.ComputeBackend and the key of its options. */
  readonly name: string
  /** The file it came from; undefined for a built-in. */
  readonly file?: string
}

/** The plugin spec a value names, without loading anything: 'cpu' -> 'backend-cpu' when that is built in. */
export function backendSpec (value: string): string {
  if (isBuiltinPlugin(value)) return value
  if (isBuiltinPlugin(`backend-${value}`)) return `backend-${value}`
  return value
}

/**
 * Load the plugin a --backend value names (relative paths against cwd) and check it provides
 * Tokens.ComputeBackend. A bare name that nothing resolves may also be the declared name of one of
 * `among` (the node's other plugin specs: `--plugins ./p.js --backend p`). Throws BackendChoiceError
 * (a ConfigError: the CLI exits 2) naming the value and what is wrong.
 */
export async function resolveBackend (value: string, cwd: string = process.cwd(), among: readonly string[] = []): Promise<BackendChoice> {
  let spec = backendSpec(value)
  let imported: ImportedPlugin
  try {
    imported = await importPlugin(spec, cwd)
  } catch (err) {
    const named = err instanceof PluginNotFoundError && !isPathSpec(spec) ? await declaredBy(value, among, cwd) : undefined
    if (named == null) throw backendError(value, spec, err)
    spec = named.spec
    imported = named.imported
  }
  const { plugin, file } = imported
  if (!plugin.provides.includes(Tokens.ComputeBackend)) {
    const what = plugin.provides.length > 0 ? `provides ${plugin.provides.map(t => `"${t}"`).join(', ')}` : 'provides nothing'
    throw new BackendChoiceError(value, `--backend ${value}: plugin "${plugin.name}" (${file ?? 'built in'}) is a ${plugin.kind} plugin that ${what}, ` +
      `not "${Tokens.ComputeBackend}"; a backend plugin binds its ComputeBackend under Tokens.ComputeBackend (docs/backends.md)`)
  }
  return { value, spec: file != null && isPathSpec(spec) ? file : spec, name: plugin.name, ...(file != null ? { file } : {}) }
}

function backendError (value: string, spec: string, err: unknown): BackendChoiceError {
  const msg = (err as Error)?.message ?? String(err)
  if (!(err instanceof PluginNotFoundError)) return new BackendChoiceError(value, `--backend ${value}: ${msg}`, { cause: err })
  const shortNames = isPathSpec(spec) ? '' : '; short names: cpu, webgpu'
  return new BackendChoiceError(value, `--backend ${value} is not a known backend: ${msg}${shortNames}`, { cause: err })
}

/** The one of `specs` whose plugin is named `name`; specs that do not load are someone else's error. */
async function declaredBy (name: string, specs: readonly string[], cwd: string): Promise<{ spec: string, imported: ImportedPlugin } | undefined> {
  for (const spec of specs) {
    const imported = await importPlugin(spec, cwd).catch(() => undefined)
    if (imported?.plugin.name === name) return { spec, imported }
  }
  return undefined
}

export interface BackendHostOptions {
  cwd?: string
  logger?: Logger
  /** The backend plugin's options (PluginContext.options). */
  options?: Record<string, unknown>
}

/**
 * Start the chosen backend plugin alone in a plugin host, run `fn` with its ComputeBackend, and stop
 * the host (which disposes the backend) whatever happens. A string is resolved first (resolveBackend).
 */
export async function withComputeBackend<R> (backend: string | BackendChoice, opts: BackendHostOptions, fn: (backend: ComputeBackend) => Promise<R>): Promise<R> {
  const choice = typeof backend === 'string' ? await resolveBackend(backend, opts.cwd) : backend
  const host = new PluginHost({
    logger: opts.logger,
    cwd: opts.cwd,
    choices: { [Tokens.ComputeBackend]: choice.name },
    pluginOptions: { [choice.name]: { ...opts.options } }
  })
  try {
    await host.load([choice.spec])
    await host.start()
    return await fn(host.container.resolve<ComputeBackend>(Tokens.ComputeBackend))
  } finally {
    await host.stop()
  }
}

/**
 * Start the backend once and check that what it binds looks like a ComputeBackend, then stop it:
 * for a launcher (the demo) that must refuse a bad backend before it starts any node process.
 * Any failure is a BackendChoiceError naming the value, the plugin and its file.
 */
export async function verifyBackend (choice: BackendChoice, opts: BackendHostOptions = {}): Promise<void> {
  const where = `plugin "${choice.name}" (${choice.file ?? 'built in'})`
  try {
    await withComputeBackend(choice, opts, async backend => {
      const problems = computeBackendProblems(backend)
      if (problems.length > 0) throw new Error(`what it binds under "${Tokens.ComputeBackend}" is not a ComputeBackend: ${problems.join('; ')}`)
    })
  } catch (err) {
    throw new BackendChoiceError(choice.value, `--backend ${choice.value}: ${where} cannot run: ${(err as Error)?.message ?? String(err)}`, { cause: err })
  }
}

const SAMPLE_METHODS: ReadonlyArray<keyof ComputeBackend> = ['alloc', 'upload', 'download', 'free', 'dispose', 'matmulForward', 'adamwUpdate']

// A shallow check, enough to tell a wrong binding (a factory, a class, a config object) from a
// backend; backendCompliance (layerswarm/testing) is the real test of one.
function computeBackendProblems (b: unknown): string[] {
  if (b == null || typeof b !== 'object') return [`it is ${b === null ? 'null' : typeof b}, not an object`]
  const o = b as Record<string, unknown>
  const info = o.info as Record<string, unknown> | undefined
  const problems: string[] = []
  if (info == null || typeof info.name !== 'string') problems.push('"info.name" must be a string')
  const missing = SAMPLE_METHODS.filter(k => typeof o[k] !== 'function')
  if (missing.length > 0) problems.push(`missing methods ${missing.join(', ')}`)
  return problems
}
