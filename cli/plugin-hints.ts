// Advice the CLI adds to a plugin error when the cause is something the user can fix but the error
// does not say: a `.js` plugin file outside a package with "type": "module" is read as CommonJS by
// the CLI's TypeScript loader (tsx), where plain Node would detect its ES module syntax, so its
// import fails with a message about require() or a missing default export.
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { isPathSpec, pathSpecFile } from '../core/node/plugin-registry.ts'

const PLUGIN_MODULE_CODES = new Set(['ERR_PLUGIN_LOAD', 'ERR_PLUGIN_INVALID'])

/** The "type" of the package.json nearest to `file` (undefined when none says). */
function packageType (file: string): unknown {
  for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json')
    if (existsSync(pkg)) {
      try { return (JSON.parse(readFileSync(pkg, 'utf8')) as { type?: unknown }).type } catch { return undefined }
    }
    if (path.dirname(dir) === dir) return undefined
  }
}

/** A hint for `err` (or an error in its cause chain) about a plugin module file; '' when none applies. */
export function pluginModuleHint (err: unknown, cwd: string = process.cwd()): string {
  for (let e = err as { code?: unknown, spec?: unknown, cause?: unknown } | undefined, depth = 0; e != null && depth < 5; e = e.cause as typeof e, depth++) {
    if (!PLUGIN_MODULE_CODES.has(e.code as string) || typeof e.spec !== 'string' || !isPathSpec(e.spec)) continue
    const file = pathSpecFile(e.spec, cwd)
    if (!file.endsWith('.js') || packageType(file) === 'module') return ''
    return `\n  ${file} is read as CommonJS: no package.json above it says "type": "module". ` +
      'An ES module plugin (import/export) is a .mjs file, or a .js file in a folder whose package.json has {"type": "module"} (docs/plugins.md).'
  }
  return ''
}
