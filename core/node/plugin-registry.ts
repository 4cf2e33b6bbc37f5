// The one place that knows where plugin modules live. A plugin spec is
//   - a built-in name ('backend-cpu'), mapped below to a module of this package, imported lazily;
//   - a file path: starts with './', '../' or '/', or is absolute or a file: URL (relative to cwd);
//   - otherwise an npm package name (optionally with a subpath), resolved from cwd's node_modules
//     the way Node resolves an ESM import (package "exports" with the node/import/default conditions,
//     else "main", else index.js).
// Core asks this module for plugins by name and never imports a plugin module by path elsewhere.
import { existsSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { PluginLoadError, PluginNotFoundError } from './plugin-errors.ts'

/** Built-in plugins: name -> module URL (relative to this file), imported only when asked for. */
const BUILTINS: Readonly<Record<string, URL>> = {
  'backend-cpu': new URL('../../plugins/backend-cpu/index.ts', import.meta.url),
  'backend-webgpu': new URL('../../plugins/backend-webgpu/index.ts', import.meta.url),
  compression: new URL('../../plugins/compression/index.ts', import.meta.url),
  scheduler: new URL('../../plugins/scheduler/index.ts', import.meta.url)
}

/** Names of the built-in plugins, sorted. */
export function builtinPluginNames (): string[] {
  return Object.keys(BUILTINS).sort()
}

export function isBuiltinPlugin (name: string): boolean {
  return Object.hasOwn(BUILTINS, name)
}

/** A module imported for a spec, and where it came from (for messages). */
export interface ImportedPluginModule {
  readonly spec: string
  /** 'builtin', or the resolved file path. */
  readonly source: string
  readonly module: unknown
}

/** Whether a spec is a file path rather than a built-in or package name. */
export function isPathSpec (spec: string): boolean {
  return spec.startsWith('./') || spec.startsWith('../') || spec.startsWith('.\\') || spec.startsWith('..\\') ||
    spec.startsWith('file:') || path.isAbsolute(spec)
}

/**
 * Import the module a spec names. Throws PluginNotFoundError when nothing matches (the message
 * lists the built-ins) and PluginLoadError when the module exists but importing it throws.
 */
export async function importPluginModule (spec: string, cwd: string = process.cwd()): Promise<ImportedPluginModule> {
  if (spec.trim() === '') throw new PluginNotFoundError(spec, `an empty plugin name; ${builtinHint()}`)
  if (isBuiltinPlugin(spec)) {
    const url = BUILTINS[spec]
    if (!existsSync(fileURLToPath(url))) {
      throw new PluginNotFoundError(spec, `the built-in module ${fileURLToPath(url)} is missing from this installation`)
    }
    return { spec, source: 'builtin', module: await importOrThrow(spec, url.href) }
  }
  const file = isPathSpec(spec) ? resolveFile(spec, cwd) : resolvePackage(spec, cwd)
  return { spec, source: file, module: await importOrThrow(spec, pathToFileURL(file).href) }
}

async function importOrThrow (spec: string, href: string): Promise<unknown> {
  try {
    return await import(href)
  } catch (err) {
    throw new PluginLoadError(spec, err)
  }
}

function builtinHint (): string {
  return `built-in plugins are: ${builtinPluginNames().join(', ')}; a file path must start with ./, ../ or /`
}

/** The absolute file a path spec names (whether or not it exists). */
export function pathSpecFile (spec: string, cwd: string = process.cwd()): string {
  return spec.startsWith('file:') ? fileURLToPath(spec) : path.resolve(cwd, spec)
}

function resolveFile (spec: string, cwd: string): string {
  const file = pathSpecFile(spec, cwd)
  if (!isFile(file)) throw new PluginNotFoundError(spec, `no file at ${file}`)
  return file
}

// The ESM conditions Node applies to an import from this process.
const CONDITIONS = new Set(['node', 'import', 'default'])

function resolvePackage (spec: string, cwd: string): string {
  const parts = spec.split('/')
  const nameLength = spec.startsWith('@') ? 2 : 1
  const name = parts.slice(0, nameLength).join('/')
  const subpath = parts.length > nameLength ? './' + parts.slice(nameLength).join('/') : '.'
  const dir = findPackageDir(name, path.resolve(cwd))
  if (dir == null) {
    const local = path.resolve(cwd, spec)
    const didYouMean = isFile(local) ? `; a file ${local} exists: did you mean "./${spec}"?` : ''
    throw new PluginNotFoundError(spec, `not a built-in plugin, and no package "${name}" is installed under ${cwd}${didYouMean}; ${builtinHint()}`)
  }
  let pkg: { exports?: unknown, main?: unknown }
  try {
    pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'))
  } catch (err) {
    throw new PluginLoadError(spec, err)
  }
  const target = pkg.exports !== undefined
    ? exportsTarget(pkg.exports, subpath)
    : subpath !== '.' ? subpath : firstFile(dir, typeof pkg.main === 'string' ? [pkg.main, pkg.main + '.js', path.join(pkg.main, 'index.js')] : [], 'index.js')
  const file = target == null ? undefined : path.resolve(dir, target)
  if (file == null || !isFile(file)) {
    throw new PluginNotFoundError(spec, `package "${name}" at ${dir} exports no module for "${subpath}"`)
  }
  return file
}

function findPackageDir (name: string, from: string): string | undefined {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name)
    if (isFile(path.join(candidate, 'package.json'))) return candidate
    if (path.dirname(dir) === dir) return undefined
  }
}

/** Resolve package.json "exports" for a subpath (exact keys; conditions in the object's order). */
function exportsTarget (exp: unknown, subpath: string): string | undefined {
  if (exp == null || typeof exp === 'string' || Array.isArray(exp)) return subpath === '.' ? conditionTarget(exp) : undefined
  if (typeof exp !== 'object') return undefined
  const keys = Object.keys(exp)
  if (keys.length > 0 && keys.every(k => k.startsWith('.'))) return conditionTarget((exp as Record<string, unknown>)[subpath])
  return subpath === '.' ? conditionTarget(exp) : undefined
}

function conditionTarget (value: unknown): string | undefined {
  if (typeof value === 'string') return value
  if (Array.isArray(value)) {
    for (const v of value) {
      const t = conditionTarget(v)
      if (t != null) return t
    }
    return undefined
  }
  if (value != null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (!CONDITIONS.has(k)) continue
      const t = conditionTarget(v)
      if (t != null) return t
    }
  }
  return undefined
}

function firstFile (dir: string, candidates: string[], fallback: string): string {
  return candidates.find(c => isFile(path.resolve(dir, c))) ?? fallback
}

function isFile (file: string): boolean {
  try {
    return statSync(file).isFile()
  } catch {
    return false
  }
}
