// `layerswarm demo`, the whole run: start a bootstrap node and the training nodes as child
// processes on 127.0.0.1, watch their status through the control sockets and show one live
// display, optionally kill one node mid-run (to show the swarm routing around it), then take one
// checkpoint per stage, stop every process, assemble the full model, evaluate it, sample text
// from it, and write model.safetensors, loss.svg and the report.
//
// Where things go: node data dirs (identity, lock, socket) in a temp dir (short paths: unix sockets
// are limited to ~100 bytes); logs, stage checkpoints and results under the out dir.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ComputeBackend } from '../contracts/backend.ts'
import type { ModelConfig } from '../model/config.ts'
import { countParameters } from '../model/config.ts'
import type { DemoData } from './demo-data.ts'
import { queryControl } from '../node/control-endpoint.ts'
import { writeFileAtomic } from '../files.ts'
import { controlRequest } from './control-client.ts'
import type { BytesPerToken } from './demo-compression.ts'
import { averagingLine, buildReport, memoryLine, type DemoAveraging, type DemoMemory, type KilledNode } from './demo-report.ts'
import { SwarmRunError } from './demo-errors.ts'
import { pause } from '../timers.ts'
import { bytes, LiveDisplay } from './live-display.ts'
import { lossChartSvg } from './loss-chart-svg.ts'
import { mergeStageCheckpoints } from '../train/merge-checkpoints.ts'
import { evaluateModel } from './model-eval.ts'
import { describeExit, logTail, SwarmLauncher, type LaunchedNode } from './swarm-launcher.ts'
import { bootstrapArgs, demoManifest, nodeConfig, nodeNames, stageAssignment, trainingNodeArgs, type DemoSettings } from './swarm-plan.ts'
import { parseTrainingStatus, snapshot, type NodeView, type SwarmSnapshot } from './swarm-view.ts'

export interface DemoOptions {
  readonly settings: DemoSettings
  readonly config: ModelConfig
  /** Text or prepared shards (core/demo/demo-data.ts): the tokenizer, held-out batches, unigram baseline. */
  readonly corpus: DemoData
  /** Results (model.safetensors, loss.svg, stages/, logs/); created if missing. */
  readonly outDir: string
  readonly reportFile: string
  /** bin/layerswarm.js and the directory to run it in. */
  readonly bin: string
  readonly cwd: string
  /** The live display (stderr) and the final summary + sample (stdout). */
  readonly displayOut: NodeJS.WritableStream
  readonly tty: boolean
  readonly summaryOut: NodeJS.WritableStream
  readonly sample: { readonly prompt: string, readonly tokens: number, readonly temperature: number }
  /** Runs `fn` with a started compute backend (the CLI's plugin host), for the eval and the sample. */
  readonly withBackend: <R>(fn: (backend: ComputeBackend) => Promise<R>) => Promise<R>
  /** Aborted on Ctrl-C / SIGTERM: the demo stops every node and throws DemoInterruptedError. */
  readonly signal?: AbortSignal
  /** Fail when no step completes for this long once training runs (default 180 s). */
  readonly stallS?: number
  /** Seconds allowed from launch to the first step (default 300: loading and wiring under load). */
  readonly startupS?: number
  /** Status poll period (default 1000 ms). */
  readonly pollMs?: number
  /** Keep the nodes' data dirs (default: removed). */
  readonly keepDataDirs?: boolean
}

export class DemoInterruptedError extends Error {
  constructor () { super('interrupted') }
}

export async function runDemo (o: DemoOptions): Promise<Record<string, unknown>> {
  const s = o.settings
  const t0 = performance.now()
  const elapsed = (): number => (performance.now() - t0) / 1000
  const logsDir = join(o.outDir, 'logs')
  const stagesDir = join(o.outDir, 'stages')
  await mkdir(logsDir, { recursive: true })
  await mkdir(stagesDir, { recursive: true })
  const work = await mkdtemp(join(tmpdir(), 'lsw-demo-'))
  const launcher = new SwarmLauncher({ bin: o.bin, cwd: o.cwd })
  const display = new LiveDisplay(o.displayOut, { tty: o.tty, title: 'layerswarm demo', clock: elapsed })
  const views: NodeView[] = []
  const launched = new Map<NodeView, LaunchedNode>()
  const interrupted = (): boolean => o.signal?.aborted === true
  const check = (): void => { if (interrupted()) throw new DemoInterruptedError() }

  try {
    // 1. the bootstrap node, then every training node at once (each takes seconds to start)
    const assignment = stageAssignment(s.nodes, s.stages)
    const names = nodeNames(assignment)
    display.note(`starting a bootstrap node and ${s.nodes} training nodes (${s.stages} stages: ${names.join(' ')}); logs in ${logsDir}`)
    display.note(`stage boundaries: ${compressionLine(s)}`)
    const bootDir = join(work, 'boot')
    const boot = await launcher.start({ name: 'boot', args: bootstrapArgs(bootDir), logFile: join(logsDir, 'boot.log') }, o.signal)
    views.push(viewOf('boot', null, boot, bootDir))
    display.note(`boot  pid ${boot.pid}  ${boot.addrs[0]}`)
    check()
    const configFile = join(work, 'node-config.json')
    await writeFile(configFile, JSON.stringify(nodeConfig(s)) + '\n')
    const manifestFile = join(o.outDir, 'run-manifest.json')
    await writeFile(manifestFile, JSON.stringify(await demoManifest(s), null, 2) + '\n')
    const started = await Promise.allSettled(assignment.map(async (stage, i) => {
      const dir = join(work, names[i])
      // the dashboard is the stage-0 node's own (node 0: never the one --kill-at-step kills): the page shows the swarm as a node's gossip sees it
      const dashboard = i === 0 && s.dashboard != null ? ['--dashboard', s.dashboard] : []
      const n = await launcher.start({ name: names[i], args: [...trainingNodeArgs(s, stage, dir, configFile, boot.addrs[0], manifestFile), ...dashboard], logFile: join(logsDir, `${names[i]}.log`) }, o.signal)
      const v = viewOf(names[i], stage, n, dir)
      launched.set(v, n)
      display.note(`${names[i].padEnd(4)}  stage ${stage}  pid ${n.pid}  ${n.peerId}`)
      return v
    }))
    check()
    const failed = started.find(r => r.status === 'rejected')
    if (failed != null) throw (failed as PromiseRejectedResult).reason
    for (const r of started) views.push((r as PromiseFulfilledResult<NodeView>).value)
    check()
    const tListening = performance.now()

    // 2. watch until every live training node is done
    const workers = views.filter(v => v.stage != null)
    let killed: KilledNode | null = null
    let lastProgress = { step: -1, mb: -1, at: elapsed() }
    let firstStepSeen = false
    let stageZeroDoneAt: number | null = null
    let dashboardUrl: string | undefined
    let snap: SwarmSnapshot = snapshot(views, s.stages, s.steps, elapsed())
    for (;;) {
      check()
      await pollAll(views, o.signal)
      if (s.dashboard != null && dashboardUrl == null) {
        dashboardUrl = await dashboardUrlOf(workers[0], o.signal)
        if (dashboardUrl != null) display.note(`dashboard: ${dashboardUrl}`)
      }
      for (const v of workers) {
        const n = launched.get(v) as LaunchedNode
        if (v.alive && n.exit != null) {
          v.alive = false
          v.exit = describeExit(n.exit)
          if (killed?.pid !== v.pid) display.note(`node ${v.name} (stage ${v.stage}) exited: ${v.exit}`)
        }
      }
      snap = snapshot(views, s.stages, s.steps, elapsed())
      display.update(snap)

      const failedNode = workers.find(v => v.training?.state === 'failed')
      if (failedNode != null) throw new SwarmRunError(`node ${failedNode.name} (stage ${failedNode.stage}) reports a failed run: ${failedNode.training?.error ?? 'no error given'}${await tailOf(logsDir, failedNode.name)}`)
      const live = workers.filter(v => v.alive)
      const done = (v: NodeView): boolean => v.training?.state === 'done'
      const empty = snap.nodesPerStage.findIndex(n => n === 0)
      if (empty >= 0 && !live.every(done)) {
        throw new SwarmRunError(`stage ${empty} has no live node left; the run cannot finish${await tailOf(logsDir, workers.find(v => v.stage === empty)?.name)}`)
      }
      if (live.length > 0 && live.every(done)) break
      // the steps are driven by stage 0; give the other stages a grace period to report done
      if (stageZeroDoneAt == null && live.filter(v => v.stage === 0).every(done)) stageZeroDoneAt = elapsed()
      if (stageZeroDoneAt != null && elapsed() - stageZeroDoneAt > 30) {
        display.note(`stage 0 finished ${s.steps} steps; ${live.filter(v => !done(v)).map(v => v.name).join(', ')} did not report done in 30 s, taking checkpoints anyway`)
        break
      }

      // chaos: SIGKILL one node of the most-served stage, once
      if (s.killAtStep > 0 && killed == null && snap.step >= s.killAtStep) {
        const victim = pickVictim(live)
        if (victim != null) {
          launcher.signal(launched.get(victim) as LaunchedNode, 'SIGKILL')
          killed = { name: victim.name, stage: victim.stage as number, pid: victim.pid, atStep: snap.step }
          display.note(`kill -9 ${victim.name} (stage ${victim.stage}, pid ${victim.pid}) at step ${snap.step}: the swarm should route around it`)
        }
      }

      if (snap.step !== lastProgress.step || snap.microbatchesDone !== lastProgress.mb) {
        if (snap.step > 0) firstStepSeen = true
        lastProgress = { step: snap.step, mb: snap.microbatchesDone, at: elapsed() }
      }
      const limit = firstStepSeen ? (o.stallS ?? 180) : (o.startupS ?? 300)
      if (elapsed() - lastProgress.at > limit) {
        throw new SwarmRunError(`no progress for ${limit} s (step ${snap.step}/${s.steps}, states ${snap.states.join(', ')}); node logs are in ${logsDir}${await tailOf(logsDir, workers[0]?.name)}`)
      }
      // a pending --kill-at-step is watched closely: on a fast machine a 1 s poll let several steps
      // pass, killing late enough to leave the survivors little of the run to show they still learn
      const pollMs = o.pollMs ?? 1000
      await pause(s.killAtStep > 0 && killed == null ? Math.min(200, pollMs) : pollMs, o.signal)
    }
    const trainSeconds = (performance.now() - tListening) / 1000
    const seconds = elapsed()
    display.done()

    // 3. one checkpoint per stage, from the live node of that stage that got furthest
    const stageFiles: string[] = []
    for (let st = 0; st < s.stages; st++) {
      const best = workers.filter(v => v.alive && v.stage === st).sort((a, b) => (b.training?.step ?? 0) - (a.training?.step ?? 0))[0]
      if (best == null) throw new SwarmRunError(`no live node of stage ${st} to take a checkpoint from`)
      const answer = await controlRequest(best.dataDir, 'POST', '/checkpoint', { body: { dir: stagesDir }, timeoutMs: 60_000 }) as { path?: unknown } | string
      const path = typeof answer === 'string' ? answer : answer?.path
      if (typeof path !== 'string') throw new SwarmRunError(`node ${best.name} answered POST /checkpoint without a path: ${JSON.stringify(answer)}`)
      stageFiles.push(path)
    }
    const runId = workers.map(v => v.training?.runId).find(x => x != null) ?? null

    // 4. stop every process before the CPU-heavy eval
    display.note('training done; stopping the nodes')
    await launcher.stopAll()
    for (const v of views) {
      const n = launched.get(v) ?? (v.stage == null ? boot : undefined)
      if (n?.exit != null && v.exit == null) v.exit = describeExit(n.exit)
      v.alive = false
    }

    // 5. the whole model, its held-out loss, a sample, the loss chart, the report
    const modelFile = join(o.outDir, 'model.safetensors')
    const merged = await mergeStageCheckpoints(stageFiles, modelFile, { tokenizer: o.corpus.tokenizer.name, source: 'layerswarm demo', ...(runId != null ? { run_id: runId } : {}) })
    display.note(`assembled the model from ${stageFiles.length} stage checkpoints: ${modelFile}`)
    const ev = await o.withBackend(async backend => await evaluateModel(backend, merged.checkpoint, o.corpus, {
      evalBatches: s.evalBatches,
      batch: s.batch,
      seqLen: s.seqLen,
      sample: { prompt: o.sample.prompt, tokens: o.sample.tokens, temperature: o.sample.temperature, seed: s.seed }
    }))
    let unigram: number | null = null
    try { unigram = o.corpus.unigramBaseline() } catch { unigram = null }

    const svgFile = join(o.outDir, 'loss.svg')
    await writeFileAtomic(svgFile, new TextEncoder().encode(lossChartSvg([
      { name: 'training loss (swarm)', points: snap.lossCurve },
      { name: 'held-out loss (assembled model)', points: ev.evalLoss != null ? [[snap.step, ev.evalLoss]] : [], style: 'markers' }
    ], {
      title: `layerswarm demo: ${s.nodes} nodes, ${s.stages} stages`,
      xLabel: 'optimizer step',
      yLabel: 'loss (nats/token)',
      references: unigram != null ? [{ label: `unigram baseline ${unigram.toFixed(2)}`, y: unigram }] : []
    })))

    const report = buildReport({
      settings: s,
      config: o.config,
      params: countParameters(o.config),
      seqLen: s.seqLen ?? o.config.blockSize,
      final: snap,
      views,
      seconds,
      trainSeconds,
      evalLoss: ev.evalLoss,
      evalBatches: ev.evalBatches,
      unigramEvalLoss: unigram,
      killed,
      runId,
      files: { checkpoint: modelFile, stageCheckpoints: stageFiles, lossCurveSvg: svgFile, logs: logsDir },
      sample: ev.sample
    })
    await writeFileAtomic(o.reportFile, new TextEncoder().encode(JSON.stringify(report, null, 2) + '\n'))

    const f = (x: unknown, digits = 3): string => typeof x === 'number' ? x.toFixed(digits) : '--'
    const bpt = report.bytes_per_token_boundary as BytesPerToken
    const ratio = report.compression_ratio as BytesPerToken
    o.summaryOut.write([
      '',
      `trained ${snap.step} steps on ${s.nodes} nodes in ${s.stages} stages: ${snap.tokens} tokens in ${trainSeconds.toFixed(1)} s (${f(report.tokens_per_s, 0)} tokens/s)`,
      `loss ${f(report.loss_first)} -> ${f(report.loss_last)}; held-out ${f(ev.evalLoss)} (unigram baseline ${f(unigram)})`,
      `microbatches: ${snap.microbatchesDone} done, ${snap.microbatchesDropped} dropped, ${snap.microbatchesRetried} retried; sent ${bytes(snap.bytesForward)} forward, ${bytes(snap.bytesBackward)} backward`,
      `boundaries: ${compressionLine(s)}; ${f(bpt.total, 1)} B/token per crossing (${f(bpt.forward, 1)} forward + ${f(bpt.backward, 1)} backward), ${f(ratio.total, 1)}x less than float32`,
      ...(report.averaging != null ? [averagingLine(report.averaging as DemoAveraging)] : []),
      memoryLine(report.memory as DemoMemory),
      ...(killed != null ? [`killed ${killed.name} (stage ${killed.stage}) at step ${killed.atStep}; the run went on with the other nodes`] : []),
      `model:  ${modelFile}  (layerswarm sample --checkpoint ${modelFile})`,
      `chart:  ${svgFile}`,
      `report: ${o.reportFile}`,
      '',
      '--- sample ---',
      ev.sample,
      '--------------',
      ''
    ].join('\n'))
    return report
  } catch (err) {
    // whatever failed while a signal came in (a start cut short, a poll) is the interruption
    if (interrupted() && !(err instanceof DemoInterruptedError)) throw new DemoInterruptedError()
    throw err
  } finally {
    // every path out (done, error, Ctrl-C) stops every process this demo started
    await launcher.stopAll(interrupted() ? 5_000 : 15_000)
    if (o.keepDataDirs !== true) await rm(work, { recursive: true, force: true }).catch(() => {})
  }
}

/** "activations int8-block, gradients int8-block, bottleneck 16" */
function compressionLine (s: DemoSettings): string {
  return `activations ${s.codec}, gradients ${s.gradCodec}${s.bottleneck != null ? `, bottleneck ${s.bottleneck}` : ''}`
}

function viewOf (name: string, stage: number | null, n: LaunchedNode, dataDir: string): NodeView {
  return { name, stage, pid: n.pid, peerId: n.peerId, dataDir, alive: true }
}

/** Polls every live node's status in parallel; a node that does not answer keeps its last view. */
async function pollAll (views: NodeView[], signal?: AbortSignal): Promise<void> {
  await Promise.all(views.filter(v => v.alive).map(async v => {
    try {
      const st = await queryControl(v.dataDir, '/status', { timeoutMs: 5000, signal })
      const t = parseTrainingStatus(st)
      if (t != null) v.training = t
      const peers = (st as { peers?: unknown })?.peers
      if (Array.isArray(peers)) v.peers = peers.length
    } catch {
      // busy or exiting: the exit is noticed through the process itself
    }
  }))
}

/** The URL of the dashboard a node serves (`dashboard.url` in its status), once it is up. */
async function dashboardUrlOf (v: NodeView | undefined, signal?: AbortSignal): Promise<string | undefined> {
  if (v == null || !v.alive) return undefined
  const st = await queryControl(v.dataDir, '/status', { timeoutMs: 5000, signal }).catch(() => undefined) as { dashboard?: { url?: unknown } } | undefined
  return typeof st?.dashboard?.url === 'string' ? st.dashboard.url : undefined
}

/** One node of the stage served by the most live nodes (never the only node of a stage). */
function pickVictim (live: NodeView[]): NodeView | undefined {
  const count = new Map<number, number>()
  for (const v of live) count.set(v.stage as number, (count.get(v.stage as number) ?? 0) + 1)
  const [stage, n] = [...count.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0] ?? [0, 0]
  if (n < 2) return undefined
  return live.filter(v => v.stage === stage).at(-1)
}

async function tailOf (logsDir: string, name: string | undefined): Promise<string> {
  if (name == null) return ''
  return `\nlast lines of ${name}'s log:\n${await logTail(join(logsDir, `${name}.log`), 12)}`
}
