// How a kernel is described: its parameters (one uniform struct of 4-byte scalars), its storage
// bindings (in binding order, after the uniform at binding 0) and its WGSL body. `wgsl()` assembles
// the full shader text, so the uniform layout the JS side writes and the struct the shader reads come
// from one list. Pure string building: runs the same in Node (Dawn) and in a browser's WebGPU.

export type ScalarType = 'u32' | 'i32' | 'f32'
export type Param = readonly [name: string, type: ScalarType]

export interface Binding {
  readonly name: string
  /** Element type of the runtime-sized array. */
  readonly type: 'f32' | 'i32' | 'u32' | 'vec4<f32>' | 'f16' | 'vec4<f16>' | 'atomic<u32>'
  readonly access: 'read' | 'read_write'
}

export interface KernelDef {
  /** Unique per variant (the pipeline cache key). */
  readonly key: string
  readonly params: readonly Param[]
  readonly bindings: readonly Binding[]
  /** Workgroup size (x, y). */
  readonly workgroup: readonly [number, number]
  /** WGSL extensions the shader enables (e.g. 'f16'; the device must have the matching feature). */
  readonly enables?: readonly string[]
  /** Helper functions placed before `main`. */
  readonly helpers?: string
  /** Body of `main`; sees `p` (params), the bindings by name, and gid/wid/nwg/lid/li. */
  readonly body: string
}

/** Bytes one dispatch's parameters take in the uniform arena (offsets must be multiples of 256). */
export const PARAM_SLOT = 256
export const MAX_PARAMS = PARAM_SLOT / 4

export const ro = (name: string, type: Binding['type'] = 'f32'): Binding => ({ name, type, access: 'read' })
export const rw = (name: string, type: Binding['type'] = 'f32'): Binding => ({ name, type, access: 'read_write' })

export function wgsl (k: KernelDef): string {
  if (k.params.length === 0 || k.params.length > MAX_PARAMS) throw new Error(`kernel ${k.key}: 1..${MAX_PARAMS} params`)
  const struct = `struct Params {\n${k.params.map(([n, t]) => `  ${n}: ${t},`).join('\n')}\n}`
  const binds = k.bindings.map((b, i) =>
    `@group(0) @binding(${i + 1}) var<storage, ${b.access}> ${b.name}: array<${b.type}>;`).join('\n')
  const enables = (k.enables ?? []).map(e => `enable ${e};\n`).join('')
  return `${enables}${struct}
@group(0) @binding(0) var<uniform> p: Params;
${binds}
${k.helpers ?? ''}
@compute @workgroup_size(${k.workgroup[0]}, ${k.workgroup[1]})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
${k.body}
}
`
}

/** Threads per workgroup of the one-dimensional (elementwise, per-row) kernels. */
export const WG1 = 64

/**
 * The linear thread index of a 1-D kernel dispatched on a 2-D grid (see grid1d): large launches
 * exceed maxComputeWorkgroupsPerDimension in x alone. Kernels return when it is >= their count.
 */
export const LINEAR = `let i = (wid.y * nwg.x + wid.x) * ${WG1}u + li;`

/** Workgroup counts (x, y) covering `threads` threads of a 1-D kernel, x at most maxX. */
export function grid1d (threads: number, maxX: number): [number, number] {
  const groups = Math.max(1, Math.ceil(threads / WG1))
  if (groups <= maxX) return [groups, 1]
  return [maxX, Math.ceil(groups / maxX)]
}
