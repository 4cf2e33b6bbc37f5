// CLI shorthand flags that stand for one option of one plugin: `--gpu-f16` is backend-webgpu's
// `{ f16: true }`. The mapping lives with the CLI, which declares these flags (commander must know a
// flag before any plugin is loaded); core and the plugin host know no plugin's options and only see
// the plugin options built here. Used by `start` (through cli/config.ts), `train` and `demo`.

/** A boolean flag that, when given, sets one option of one plugin to true. */
export interface PluginShorthand {
  /** The flag as typed; commander parses it into the camel-cased key ('--gpu-f16' -> gpuF16). */
  readonly flag: `--${string}`
  /** The plugin whose option it sets, by the name the plugin declares. */
  readonly plugin: string
  readonly option: string
}

export const PLUGIN_SHORTHANDS: readonly PluginShorthand[] = [
  { flag: '--allow-software-gpu', plugin: 'backend-webgpu', option: 'allowSoftwareGpu' },
  { flag: '--gpu-f16', plugin: 'backend-webgpu', option: 'f16' }
]

/** The key commander stores a flag under: '--allow-software-gpu' -> 'allowSoftwareGpu'. */
export function flagKey (flag: string): string {
  return flag.slice(2).replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase())
}

/** The plugin options the shorthand flags given in `flags` (commander's parsed options) stand for, by plugin name. */
export function shorthandOptions (flags: object): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {}
  for (const s of PLUGIN_SHORTHANDS) {
    if ((flags as Record<string, unknown>)[flagKey(s.flag)] !== true) continue
    out[s.plugin] = { ...out[s.plugin], [s.option]: true }
  }
  return out
}

/** One plugin's options from the shorthand flags given (empty when none of its flags is). */
export function pluginShorthandOptions (plugin: string, flags: object): Record<string, unknown> {
  return shorthandOptions(flags)[plugin] ?? {}
}

/** pluginOptions with the given shorthand flags' options over each plugin's own (the same object when none is given). */
export function withShorthandOptions (opts: Record<string, Record<string, unknown>> | undefined, flags: object): Record<string, Record<string, unknown>> | undefined {
  const given = Object.entries(shorthandOptions(flags))
  if (given.length === 0) return opts
  return { ...opts, ...Object.fromEntries(given.map(([plugin, o]) => [plugin, { ...opts?.[plugin], ...o }])) }
}
