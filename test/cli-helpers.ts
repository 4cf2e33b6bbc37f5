// Helpers of the CLI tests: run `node bin/layerswarm.js ...` as a real child process.
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const BIN = fileURLToPath(new URL('../bin/layerswarm.js', import.meta.url))
export const ROOT = fileURLToPath(new URL('..', import.meta.url))

export interface RunResult { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }

/** Env for children: ours minus any LAYERSWARM_* a developer may have set, plus `extra`. */
function childEnv (extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('LAYERSWARM_')) env[k] = v
  return { ...env, ...extra }
}

/** Where a CLI child runs: the repository's bin in its root, unless a test gives another (a packed copy, an author's folder). */
export interface CliPlace { bin?: string, cwd?: string }

/** Runs a short command to its end (killed after timeoutMs). */
export async function runCli (args: string[], opts: { env?: Record<string, string>, timeoutMs?: number } & CliPlace = {}): Promise<RunResult> {
  const child = spawn(process.execPath, [opts.bin ?? BIN, ...args], { cwd: opts.cwd ?? ROOT, env: childEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const timer = setTimeout(() => { child.kill('SIGKILL') }, opts.timeoutMs ?? 30_000)
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>(resolve => child.on('exit', (c, s) => { resolve([c, s]) }))
  clearTimeout(timer)
  return { code, signal, stdout, stderr }
}

export interface RunningNode {
  child: ChildProcess
  peerId: string
  addrs: string[]
  stderr: () => string
  /** Resolves with the exit (code, signal). */
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

/** Starts `layerswarm start ...` and resolves once it printed its listening line. */
export async function startCli (args: string[], opts: { env?: Record<string, string>, timeoutMs?: number } & CliPlace = {}): Promise<RunningNode> {
  const child = spawn(process.execPath, [opts.bin ?? BIN, 'start', ...args], { cwd: opts.cwd ?? ROOT, env: childEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => child.on('exit', (code, signal) => { resolve({ code, signal }) }))
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`no listening line in ${opts.timeoutMs ?? 30_000} ms; stderr:\n${stderr}`)) }, opts.timeoutMs ?? 30_000)
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString()
      const m = stdout.split('\n').find(l => l.startsWith('listening '))
      if (m != null) { clearTimeout(timer); resolve(m) }
    })
    void exited.then(({ code }) => { clearTimeout(timer); reject(new Error(`exited with ${code} before listening; stderr:\n${stderr}`)) })
  })
  const m = /^listening peerId=(\S+) addrs=(\S+)$/.exec(line)
  if (m == null) throw new Error(`unexpected listening line: ${line}`)
  return { child, peerId: m[1], addrs: m[2].split(','), stderr: () => stderr, exited }
}

/** SIGTERM, bounded: SIGKILL after timeoutMs. */
export async function terminate (node: RunningNode, timeoutMs = 20_000): Promise<{ code: number | null, signal: NodeJS.Signals | null }> {
  if (node.child.exitCode != null || node.child.signalCode != null) return await node.exited
  node.child.kill('SIGTERM')
  const timer = setTimeout(() => { node.child.kill('SIGKILL') }, timeoutMs)
  const result = await node.exited
  clearTimeout(timer)
  return result
}
