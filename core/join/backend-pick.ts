// Which backend a volunteer's node computes on (`layerswarm join`): a hardware WebGPU adapter where
// there is one, else the CPU. A software adapter (llvmpipe/lavapipe, SwiftShader, WARP) is slower
// than the CPU backend on the same cores, so it does not count. Dawn is asked in a child process
// (gpu-probe-child.mjs): a broken driver that crashes or hangs it costs the probe, not the node.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

/** What the probe saw: Dawn's default adapter, none, or why it could not ask. */
export type GpuProbe =
  | { readonly adapter: AdapterInfo }
  | { readonly adapter: null }
  | { readonly error: string }

export interface AdapterInfo {
  readonly vendor: string
  readonly architecture: string
  readonly device: string
  readonly description: string
  readonly isFallbackAdapter: boolean
}

export interface BackendPick {
  /** A --backend value: 'webgpu' or 'cpu'. */
  readonly backend: 'webgpu' | 'cpu'
  /** Why, in words, for the volunteer. */
  readonly why: string
}

// the names plugins/backend-webgpu/adapter.ts refuses without --allow-software-gpu (core may not import a plugin)
const SOFTWARE_NAMES = /llvmpipe|lavapipe|swiftshader|software|microsoft basic render|\bwarp\b/i

export function isSoftwareAdapter (a: AdapterInfo): boolean {
  return a.isFallbackAdapter || a.architecture === 'software' || SOFTWARE_NAMES.test(`${a.vendor} ${a.device} ${a.description}`)
}

function adapterName (a: AdapterInfo): string {
  return [a.vendor, a.device || a.description, a.architecture].filter(s => s !== '').join(' ') || 'an unnamed adapter'
}

/** The backend a probe's answer calls for. */
export function pickBackend (probe: GpuProbe): BackendPick {
  if ('error' in probe) return { backend: 'cpu', why: `WebGPU could not be asked (${probe.error})` }
  const a = probe.adapter
  if (a == null) return { backend: 'cpu', why: 'no WebGPU adapter was found (no GPU driver that Dawn can use)' }
  if (isSoftwareAdapter(a)) return { backend: 'cpu', why: `the only WebGPU adapter is a software one (${adapterName(a)}), slower than the CPU backend` }
  return { backend: 'webgpu', why: `a hardware WebGPU adapter was found (${adapterName(a)})` }
}

const CHILD = fileURLToPath(new URL('./gpu-probe-child.mjs', import.meta.url))

/** Asks Dawn for an adapter in a child process, within timeoutMs (default 20 s). Never throws. */
export async function probeGpu (opts: { signal?: AbortSignal, timeoutMs?: number } = {}): Promise<GpuProbe> {
  const timeoutMs = opts.timeoutMs ?? 20_000
  return await new Promise<GpuProbe>(resolve => {
    let out = ''
    let settled = false
    const child = spawn(process.execPath, [CHILD], { stdio: ['ignore', 'pipe', 'ignore'] })
    const done = (p: GpuProbe): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      opts.signal?.removeEventListener('abort', onAbort)
      if (child.exitCode == null && child.signalCode == null) child.kill('SIGKILL')
      resolve(p)
    }
    const onAbort = (): void => { done({ error: 'the probe was cancelled' }) }
    const timer = setTimeout(() => { done({ error: `no answer in ${timeoutMs / 1000} s` }) }, timeoutMs)
    opts.signal?.addEventListener('abort', onAbort, { once: true })
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    child.on('error', err => { done({ error: err.message }) })
    child.on('exit', (code, signal) => {
      const line = out.split('\n').find(l => l.startsWith('{'))
      try {
        const p = JSON.parse(line ?? '') as GpuProbe
        done(p)
      } catch {
        done({ error: `the probe ended (${signal ?? `code ${String(code)}`}) without an answer` })
      }
    })
  })
}
