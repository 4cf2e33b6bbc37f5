// The two runs `layerswarm bench swarm` compares, as real processes on this machine:
//
//   local  `layerswarm train --local` on every core: the whole model in one process (its report
//          gives tokens/s over its training steps and the held-out loss of its final eval)
//   swarm  a bootstrap node and S `layerswarm start --stage N` children on 127.0.0.1 (the demo's
//          launcher and arguments, core/demo), each training node pinned to its own core with
//          `taskset` where the machine has >= S cores; the time from stage 0 starting to train to
//          stage 0 finishing its last step, read from its control socket every 100 ms; then one
//          checkpoint per stage and every node's `profile` (core/pipeline/pipeline-profile.ts)
//
// Both train the same model (the same stage split and bottleneck) on the same tokens: the swarm's
// data role draws with `--sample-node-id local`, the key `train --local` uses, with the same seed,
// batch, microbatches, steps and schedule. Every process started here is killed in `finally`.
import { spawn, spawnSync } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { queryControl } from '../core/node/control-endpoint.ts'
import { controlRequest } from '../core/demo/control-client.ts'
import { cleanEnv, logTail, SwarmLauncher, type LaunchedNode } from '../core/demo/swarm-launcher.ts'
import { bootstrapArgs, demoManifest, nodeConfig, trainingNodeArgs, type DemoSettings } from '../core/demo/swarm-plan.ts'
import type { ProfileSnapshot } from '../core/pipeline/pipeline-profile.ts'
import { pause } from '../core/timers.ts'
import { SwarmBenchError } from './swarm-errors.ts'

export const BIN = fileURLToPath(new URL('../bin/layerswarm.js', import.meta.url))
export const ROOT = fileURLToPath(new URL('..', import.meta.url))

/** What both runs train: the same model, tokens and schedule. */
export interface SwarmBenchSettings {
  readonly stages: number
  readonly steps: number
  /** Preset name or an absolute JSON file. */
  readonly model: string
  readonly batch: number
  /** Microbatches per optimizer step (the swarm keeps up to maxInflight of them in flight). */
  readonly microbatches: number
  readonly maxInflight: number
  readonly lr: number
  readonly seed: number
  /** Boundary codec (`none`: raw f32) and bottleneck k (null: none). */
  readonly codec: string
  readonly bottleneck: number | null
  /** Pin each training node to its own core (taskset) where the machine has enough. */
  readonly pin: boolean
  /** Absolute path of the training data (a `data prepare` folder or text); undefined: the shipped corpus, bytes. */
  readonly data?: string
  /** T, tokens per sequence (undefined: the model's context). */
  readonly seqLen?: number
  /**
   * Gradient clipping norm of both runs (undefined: the default, 1). A stage clips by its own norm,
   * train --local by the global one: 0 makes the two runs the same computation.
   */
  readonly gradClip?: number
}

export interface LocalResult {
  readonly tokensPerS: number
  readonly evalLoss: number
  readonly trainSeconds: number
  readonly tokens: number
  /** The data's held-out unigram loss (train --local's report). */
  readonly unigramLoss: number
  readonly threads: number
  readonly pid: number
}

export interface StageProfile {
  readonly stage: number
  readonly pid: number
  readonly core: number | null
  readonly profile: ProfileSnapshot | null
}

export interface SwarmResult {
  readonly tokensPerS: number
  readonly trainSeconds: number
  readonly tokens: number
  /** One checkpoint file per stage, in stage order. */
  readonly stageFiles: string[]
  readonly stages: StageProfile[]
  /** Whether every training node was pinned to its own core, and why not. */
  readonly pinned: boolean
  readonly pinNote: string
  readonly threadsPerNode: number
  /** Every process this run started (bootstrap first). */
  readonly pids: number[]
}

type Say = (line: string) => void

/** `train --local` with `threads` backend threads; its report gives tokens/s and the final held-out loss. */
export async function runLocal (s: SwarmBenchSettings, dir: string, threads: number, say: Say, signal?: AbortSignal): Promise<LocalResult> {
  const report = join(dir, 'local-report.json')
  const logFile = join(dir, 'local.log')
  const args = [BIN, 'train', '--local', '--model', s.model, '--steps', String(s.steps), '--batch', String(s.batch), '--micro', String(s.microbatches),
    '--lr', String(s.lr), '--seed', String(s.seed), '--threads', String(threads), '--stages', String(s.stages),
    '--bottleneck', String(s.bottleneck ?? 0), '--eval-every', '0', '--report', report, '--log-level', 'warn', ...dataArgs(s)]
  say(`local: train --local, ${threads} threads, ${s.steps} steps of ${s.microbatches} x ${s.batch} sequences`)
  const child = spawn(process.execPath, args, { cwd: ROOT, env: cleanEnv(), stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-8000) })
  const exited = new Promise<number | null>(resolve => { child.on('exit', code => { resolve(code) }) })
  const kill = (): void => { if (child.exitCode == null && child.signalCode == null) child.kill('SIGKILL') }
  signal?.addEventListener('abort', kill, { once: true })
  try {
    const code = await exited
    await writeFile(logFile, stderr)
    if (code !== 0) throw new SwarmBenchError(`train --local exited with code ${code}: ${stderr.split('\n').slice(-10).join('\n')}`)
    const r = JSON.parse(await readFile(report, 'utf8')) as { tokens_per_s: number, eval_loss: number | null, train_seconds: number, tokens: number, unigram_eval_loss: number }
    if (r.eval_loss == null) throw new SwarmBenchError('train --local reported no held-out loss')
    return { tokensPerS: r.tokens_per_s, evalLoss: r.eval_loss, trainSeconds: r.train_seconds, tokens: r.tokens, unigramLoss: r.unigram_eval_loss, threads, pid: child.pid as number }
  } finally {
    signal?.removeEventListener('abort', kill)
    kill()
    await exited
  }
}

/** `--data`, `--seq-len` and `--grad-clip` where set: train --local and the stage nodes take the same flags. */
function dataArgs (s: SwarmBenchSettings): string[] {
  return [...(s.data != null ? ['--data', s.data] : []), ...(s.seqLen != null ? ['--seq-len', String(s.seqLen)] : []), ...(s.gradClip != null ? ['--grad-clip', String(s.gradClip)] : [])]
}

/** The demo's settings for these: one node per stage, no averaging, no eval in the swarm (the bench evaluates the assembled model). */
function demoSettings (s: SwarmBenchSettings, threads: number): DemoSettings {
  return {
    nodes: s.stages,
    stages: s.stages,
    steps: s.steps,
    model: s.model,
    backend: 'cpu',
    seed: s.seed,
    batch: s.batch,
    lr: s.lr,
    microbatches: s.microbatches,
    maxInflight: s.maxInflight,
    evalBatches: 0,
    threads,
    killAtStep: 0,
    averageEvery: 0,
    codec: s.codec,
    gradCodec: s.codec,
    bottleneck: s.bottleneck,
    ...(s.data != null ? { data: s.data } : {}),
    ...(s.seqLen != null ? { seqLen: s.seqLen } : {})
  }
}

/** Pins every thread of `pid` to `core`; returns an error text, or null when it worked. */
function pinTo (pid: number, core: number): string | null {
  const r = spawnSync('taskset', ['-a', '-p', '-c', String(core), String(pid)], { encoding: 'utf8' })
  if (r.error != null) return r.error.message
  return r.status === 0 ? null : `taskset exited ${r.status}: ${r.stderr.trim()}`
}

/** Whether pinning is possible here: taskset exists and there are at least `stages` cores. */
export function pinPlan (want: boolean, stages: number, cores: number): { pin: boolean, note: string } {
  if (!want) return { pin: false, note: 'not asked (--no-pin)' }
  if (cores < stages) return { pin: false, note: `${cores} cores for ${stages} stages` }
  const r = spawnSync('taskset', ['-V'], { encoding: 'utf8' })
  if (r.error != null || r.status !== 0) return { pin: false, note: 'taskset is not installed' }
  return { pin: true, note: `one core per training node (taskset -a -p -c), cores 0..${stages - 1}` }
}

export async function runSwarm (s: SwarmBenchSettings, dir: string, cores: number, say: Say, signal?: AbortSignal): Promise<SwarmResult> {
  const threads = Math.max(1, Math.floor(cores / s.stages))
  const plan = pinPlan(s.pin, s.stages, cores)
  const launcher = new SwarmLauncher({ bin: BIN, cwd: ROOT })
  const ds = demoSettings(s, threads)
  const pids: number[] = []
  const nodes: Array<{ stage: number, dataDir: string, node: LaunchedNode, core: number | null }> = []
  let pinned = plan.pin
  let pinNote = plan.note
  try {
    const boot = await launcher.start({ name: 'boot', args: bootstrapArgs(join(dir, 'boot')), logFile: join(dir, 'boot.log') }, signal)
    pids.push(boot.pid)
    const configFile = join(dir, 'node-config.json')
    await writeFile(configFile, JSON.stringify(nodeConfig(ds)) + '\n')
    const manifestFile = join(dir, 'run-manifest.json')
    const manifest = await demoManifest(ds)
    // the nodes take the optimizer from this file (start has no --grad-clip beside a manifest)
    const optimizer = { ...manifest.optimizer, ...(s.gradClip != null ? { clip: s.gradClip } : {}) }
    await writeFile(manifestFile, JSON.stringify({ ...manifest, optimizer }, null, 2) + '\n')
    // the last stage first: stage 0 starts its microbatches as soon as it sees a peer of stage 1
    for (let stage = s.stages - 1; stage >= 0; stage--) {
      const dataDir = join(dir, `s${stage}`)
      const args = [...trainingNodeArgs(ds, stage, dataDir, configFile, boot.addrs[0], manifestFile), '--sample-node-id', 'local', '--log-level', 'warn']
      const node = await launcher.start({ name: `s${stage}`, args, logFile: join(dir, `s${stage}.log`) }, signal)
      pids.push(node.pid)
      let core: number | null = null
      if (plan.pin) {
        const err = pinTo(node.pid, stage)
        if (err == null) core = stage
        else { pinned = false; pinNote = `taskset failed: ${err}` }
      }
      nodes.unshift({ stage, dataDir, node, core })
      say(`swarm: stage ${stage} pid ${node.pid}${core != null ? ` on core ${core}` : ''}`)
    }
    const first = nodes[0]
    const { tStart, tEnd } = await watchStageZero(s, first.dataDir, launcher, dir, signal)
    const trainSeconds = (tEnd - tStart) / 1000
    const tokens = tokensOf(await statusOf(first.dataDir))
    const stagesDir = join(dir, 'stages')
    const stageFiles: string[] = []
    const stages: StageProfile[] = []
    for (const n of nodes) {
      const answer = await controlRequest(n.dataDir, 'POST', '/checkpoint', { body: { dir: stagesDir }, timeoutMs: 120_000 }) as { path?: unknown } | string
      const path = typeof answer === 'string' ? answer : answer?.path
      if (typeof path !== 'string') throw new SwarmBenchError(`stage ${n.stage} answered POST /checkpoint without a path: ${JSON.stringify(answer)}`)
      stageFiles.push(path)
      const training = (await statusOf(n.dataDir))?.training as { profile?: ProfileSnapshot } | undefined
      stages.push({ stage: n.stage, pid: n.node.pid, core: n.core, profile: training?.profile ?? null })
    }
    return { tokensPerS: tokens / trainSeconds, trainSeconds, tokens, stageFiles, stages, pinned, pinNote, threadsPerNode: threads, pids }
  } finally {
    await launcher.stopAll(5_000)
  }
}

async function statusOf (dataDir: string): Promise<Record<string, unknown> | undefined> {
  return await queryControl(dataDir, '/status', { timeoutMs: 10_000 }) as Record<string, unknown> | undefined
}

/** Tokens stage 0 completed (B x T per microbatch that came back: every step's, unless some were dropped). */
function tokensOf (status: Record<string, unknown> | undefined): number {
  const t = status?.training as { tokens?: number } | undefined
  if (t?.tokens == null || t.tokens <= 0) throw new SwarmBenchError('stage 0 reports no completed microbatches')
  return t.tokens
}

/** Polls stage 0 every 100 ms: when it starts to train, when its last step is done. */
async function watchStageZero (s: SwarmBenchSettings, dataDir: string, launcher: SwarmLauncher, dir: string, signal?: AbortSignal): Promise<{ tStart: number, tEnd: number }> {
  let tStart: number | null = null
  let last = { step: -1, at: performance.now() }
  for (;;) {
    if (signal?.aborted === true) throw new SwarmBenchError('interrupted')
    const dead = launcher.nodes.find(n => n.exit != null)
    if (dead != null) throw new SwarmBenchError(`node ${dead.spec.name} exited during the run; its log ends with:\n${await logTail(join(dir, `${dead.spec.name}.log`), 12)}`)
    const t = (await statusOf(dataDir).catch(() => undefined))?.training as { state?: string, step?: number, error?: string } | undefined
    const now = performance.now()
    if (t?.state === 'failed') throw new SwarmBenchError(`stage 0 failed: ${t.error ?? 'no error given'}`)
    if (tStart == null && (t?.state === 'training' || (t?.step ?? 0) > 0)) tStart = now
    if (tStart != null && (t?.step ?? 0) >= s.steps) return { tStart, tEnd: now }
    if ((t?.step ?? -1) !== last.step) last = { step: t?.step ?? -1, at: now }
    if (now - last.at > 180_000) throw new SwarmBenchError(`no step for 180 s (stage 0 at step ${last.step}, state ${t?.state ?? '?'}); logs in ${dir}`)
    await pause(100, signal)
  }
}
