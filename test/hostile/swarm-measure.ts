// Measuring a live swarm of `layerswarm start` processes under attack (test/hostile-swarm.test.ts):
// a run manifest with the averaging period chosen, an attacker process (test/hostile/swarm-attack.ts)
// and its counters, stage 0's step rate and a node's memory over a window.
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { validateManifest } from '../../core/run/manifest.ts'
import { buildManifest, parseTrainingOptions } from '../../core/runtime/training-runtime.ts'
import { validateModelConfig } from '../../core/model/config.ts'
import { ROOT } from '../cli-helpers.ts'
import { trainingOf, type SwarmNode } from '../swarm-helpers.ts'
import { waitFor } from '../wait-helpers.ts'

export const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** VmRSS and VmHWM of `pid`, in MiB. */
export function memoryOf (pid: number): { rss: number, hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) / 1024
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') }
}

/** CPU time (user + system) `pid` has used, in seconds (/proc/PID/stat, clock ticks of 1/100 s). */
export function cpuSecondsOf (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // the fields after the command name, which may itself hold spaces: state is field 3, utime 14, stime 15
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) / 100
}

/**
 * The run flags every node gets, plus a run manifest file (`--run-manifest`) with averaging every
 * `period` steps in params mode (0: never). `start` has no averaging flag.
 */
export async function runArgs (dir: string, model: string, period: number): Promise<string[]> {
  const flags = { stages: '3', model, steps: '100000', seed: '7', batch: '2', lr: '1e-3', warmup: '2', microbatches: '2' }
  const m = await buildManifest(parseTrainingOptions(flags))
  const manifest = validateManifest({ ...structuredClone(m) as object, averaging: { period: period > 0 ? period : 100_001, mode: 'params' } }, { validateModel: validateModelConfig })
  const file = join(dir, 'run-manifest.json')
  await writeFile(file, JSON.stringify(manifest))
  return ['--run-manifest', file, ...Object.entries(flags).flatMap(([k, v]) => [`--${k}`, v]), '--max-inflight', '4', '--eval-batches', '0', '--log-level', 'info']
}

export interface Attacker {
  readonly proc: ChildProcess
  peers: () => string[]
  stats: () => Record<string, number>
  stop: () => Promise<void>
}

/** Starts test/hostile/swarm-attack.ts with `args`; resolves once its identities are up. */
export async function startAttacker (args: string[]): Promise<Attacker> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/hostile/swarm-attack.ts'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let peers: string[] = []
  let stats: Record<string, number> = {}
  let stderr = ''
  proc.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000) })
  createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on('line', line => {
    try {
      const o = JSON.parse(line) as Record<string, number> & { peers?: string[] }
      if (o.peers != null) peers = o.peers
      else stats = o
    } catch {}
  })
  const exited = new Promise<void>(resolve => { proc.once('exit', () => { resolve() }) })
  const a: Attacker = {
    proc,
    peers: () => peers,
    stats: () => stats,
    stop: async () => {
      if (proc.exitCode == null && proc.signalCode == null) proc.kill('SIGTERM')
      const t = setTimeout(() => { proc.kill('SIGKILL') }, 5000)
      await exited
      clearTimeout(t)
    }
  }
  try {
    await waitFor(() => peers.length > 0 ? true : proc.exitCode != null ? Promise.reject(new Error(`attacker exited: ${stderr}`)) : undefined, { what: 'the attacker to start', timeoutMs: 60_000, intervalMs: 200, failOnError: true, state: () => stderr })
  } catch (err) {
    await a.stop()
    throw err
  }
  return a
}

export interface Window {
  /** Stage 0's optimizer steps over the window. */
  readonly steps: number
  /** Per watched pid: its peak sampled RSS (MiB) over the window and its VmHWM at the end. */
  readonly rss: number[]
  readonly hwm: number[]
  /** Per watched pid: CPU seconds it used over the window. */
  readonly cpu: number[]
}

/** Stage 0's steps and the watched nodes' memory over `ms`. */
export async function measure (s0: SwarmNode, watch: readonly SwarmNode[], ms: number): Promise<Window> {
  const stepOf = async (): Promise<number> => (await trainingOf(s0.dataDir))?.step ?? 0
  const a = await stepOf()
  const rss = watch.map(() => 0)
  const cpu0 = watch.map(n => cpuSecondsOf(n.node.pid))
  const until = Date.now() + ms
  while (Date.now() < until) {
    watch.forEach((n, i) => { rss[i] = Math.max(rss[i], memoryOf(n.node.pid).rss) })
    await sleep(250)
  }
  const cpu = watch.map((n, i) => cpuSecondsOf(n.node.pid) - cpu0[i])
  return { steps: (await stepOf()) - a, rss, hwm: watch.map(n => memoryOf(n.node.pid).hwm), cpu }
}

/** "12.3 steps/s, RSS peak 300 MiB, VmHWM 310 MiB, CPU 41/38 % (64 ms CPU per step, together)" of one window (CPU: % of one core). */
export function describeWindow (w: Window, ms: number): string {
  return `${(w.steps / (ms / 1000)).toFixed(2)} steps/s, RSS peak ${w.rss.map(x => x.toFixed(0)).join('/')} MiB, VmHWM ${w.hwm.map(x => x.toFixed(0)).join('/')} MiB, ` +
    `CPU ${w.cpu.map(x => (100 * x / (ms / 1000)).toFixed(0)).join('/')} %` +
    (w.steps > 0 ? ` (${(1000 * w.cpu.reduce((a, b) => a + b, 0) / w.steps).toFixed(0)} ms CPU per step, together)` : '')
}
