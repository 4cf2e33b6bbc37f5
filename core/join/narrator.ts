// What `layerswarm join` tells a volunteer, one plain line per phase: finding peers, the stage the
// scheduler chose and why, the download of its weights, training progress, and what it waits for.
// It reads two things: the log events of the node's parts (log-tap.ts: the moments) and the
// training status, polled by tick() (the progress). Where a progress sink is given (a TTY), the
// waits and the training show as bars instead of repeated lines.
import type { HostStatus } from '../pipeline/training-status.ts'
import type { LogEvent } from './log-tap.ts'

/** Bars for long waits; the join command draws them (cli-progress) on a TTY. */
export interface ProgressSink {
  /** A wait of unknown length (a download): shows the label and the time spent. */
  wait(label: string): void
  /** Training progress: step of steps, with a short text after the bar. */
  training(step: number, steps: number, text: string): void
  /** Removes any bar (before a plain line, and at the end). */
  clear(): void
}

export interface NarratorInit {
  /** Prints one plain line. */
  readonly say: (line: string) => void
  readonly progress?: ProgressSink
  /** Peers connected, and of them those heard from in this run. */
  readonly peers: () => { connected: number, inRun: number }
  /** The training runtime's status (undefined before it started). */
  readonly status: () => HostStatus | undefined
  /** Serving peers of a stage, best first (the scheduler's view). */
  readonly peersForStage?: (stage: number) => string[]
  /** What to say while nobody is found (e.g. how to pass a bootstrap address). */
  readonly noPeersHint: string
  /** Plain training lines at most this often (ms). Default 5000. */
  readonly everyMs?: number
  /** After this long with no peer, say noPeersHint, and again as often (ms). Default 10000 and 60000. */
  readonly aloneMs?: number
  readonly aloneRepeatMs?: number
  readonly now?: () => number
}

const short = (peer: string): string => peer.length > 12 ? `…${peer.slice(-8)}` : peer
const int = (n: number): string => Math.round(n).toLocaleString('en-US')

export class Narrator {
  private readonly t0: number
  private lastPeers = -1
  private aloneSaid = 0
  private stage: number | undefined
  private why = ''
  private downloading = false
  private lastState = ''
  private lastLine = { at: 0, step: -1, tokens: 0 }
  private waitingSaid = ''

  constructor (private readonly o: NarratorInit) {
    this.t0 = this.now()
  }

  private now (): number {
    return this.o.now?.() ?? Date.now()
  }

  private say (line: string): void {
    this.o.progress?.clear()
    this.o.say(line)
  }

  /** A log event of the node's parts; the ones that mark a phase become a line. */
  event (e: LogEvent): void {
    const f = e.fields
    const stages = this.o.status()?.stages
    const of = (s: number): string => stages != null ? `stage ${s} (stages 0-${stages - 1})` : `stage ${s}`
    if (e.msg === 'joining stage' && typeof f.stage === 'number') {
      this.stage = f.stage
      this.why = joinReason(f.stage, f.throughputs)
      this.say(`taking ${of(f.stage)} (the scheduler chose it: ${this.why})`)
      const donors = (this.o.peersForStage?.(f.stage) ?? []).filter(p => p !== this.o.status()?.peerId)
      if (donors.length > 0) {
        this.downloading = true
        this.say(`downloading the stage's weights from ${donors.slice(0, 3).map(short).join(', ')}${donors.length > 3 ? ` and ${donors.length - 3} more` : ''}`)
        this.o.progress?.wait(`downloading stage ${f.stage}'s weights`)
      }
    } else if (e.msg === 'rebalancing: elected to move' && typeof f.to === 'number') {
      this.say(`moving from stage ${String(f.from)} to stage ${f.to}: the scheduler rebalances the swarm toward its slowest stage`)
    } else if (e.msg === 'serving stage' && e.component === 'layerswarm:runtime:stage' && typeof f.stage === 'number') {
      if (f.from === 'init') this.say(`no peer has trained stage ${f.stage} yet: starting from the run's initial weights`)
      else this.say(`downloaded stage ${f.stage}'s weights from ${typeof f.from === 'string' ? short(f.from) : 'its peers'} (swarm step ${String(f.step)})`)
      this.downloading = false
    } else if (e.msg === 'serving stage' && e.component === 'layerswarm:scheduler' && typeof f.stage === 'number') {
      const why = f.reason === 'join' ? this.why : f.reason === 'rebalance' ? 'it rebalanced the swarm' : String(f.reason)
      this.say(`serving ${of(f.stage)} (the scheduler chose it: ${why})`)
    } else if (e.msg === 'data' && typeof f.trainTokens === 'number') {
      this.say(`reading the training data: ${int(f.trainTokens)} tokens${typeof f.path === 'string' ? ` from ${f.path}` : ' (the bundled corpus)'}`)
    } else if (e.msg.startsWith('no stage fits')) {
      this.say('no stage of this run fits this machine\'s memory budget: waiting unassigned (free some memory, or pass --max-memory SIZE)')
    } else if (e.msg === 'fetching stage state failed; retrying' || e.msg === 'cannot serve the stage') {
      this.downloading = false
      this.say(`could not take the stage yet (${String(f.error ?? 'see the log')}): trying again`)
    }
  }

  /** Polls peers and status; call it about once a second. */
  tick (): void {
    const now = this.now()
    const st = this.o.status()
    const assigned = st?.stage != null || this.stage != null
    if (!assigned) {
      const { connected, inRun } = this.o.peers()
      if (connected !== this.lastPeers) {
        this.lastPeers = connected
        this.say(`finding peers (${connected} found${inRun > 0 ? `, ${inRun} in this run` : ''})`)
      }
      const alone = now - this.t0 >= (this.o.aloneMs ?? 10_000) && now - this.aloneSaid >= (this.o.aloneRepeatMs ?? 60_000)
      if (connected === 0 && alone) {
        this.aloneSaid = now
        this.say(this.o.noPeersHint)
      }
      return
    }
    if (st == null) return
    if (this.downloading) this.o.progress?.wait(`downloading stage ${this.stage ?? '?'}'s weights`)
    if (st.state !== this.lastState) {
      this.lastState = st.state
      if (st.state === 'done') this.say(`the run is over at step ${int(st.step)}: still serving the stage's weights to late joiners; Ctrl-C to leave`)
      if (st.state === 'failed') this.say(`training failed: ${st.error ?? 'see the log'}`)
    }
    if (st.state === 'waiting-peers') {
      const empty = (st.servingPerStage ?? []).flatMap((n, s) => n === 0 && s !== st.stage ? [s] : [])
      const text = empty.length > 0 ? `waiting for peers: nobody serves stage ${empty.join(', ')} yet` : 'waiting for peers of the other stages'
      if (text !== this.waitingSaid) { this.waitingSaid = text; this.say(text) }
    }
    if (st.state !== 'training' || st.step === 0 || st.step === this.lastLine.step) return
    const dt = (now - this.lastLine.at) / 1000
    const rate = this.lastLine.at > 0 && dt > 0 ? (st.tokens - this.lastLine.tokens) / dt : null
    const text = `step ${int(st.step)}${rate != null ? `, ${int(rate)} tokens/s` : ''}${st.lossLast != null ? `, loss ${st.lossLast.toFixed(2)}` : ''}`
    if (this.o.progress != null) {
      this.o.progress.training(st.step, st.steps, text)
    } else if (now - this.lastLine.at < (this.o.everyMs ?? 5000)) {
      return
    } else {
      this.o.say(`training: ${text}`)
    }
    this.lastLine = { at: now, step: st.step, tokens: st.tokens }
  }
}

/** The scheduler's join choice in words: the stage with the least throughput per unit of work. */
export function joinReason (stage: number, throughputs: unknown): string {
  const t = Array.isArray(throughputs) && throughputs.every(x => typeof x === 'number') ? throughputs as number[] : undefined
  if (t == null || t.length === 0) return 'it needs a node most'
  if (t[stage] === 0) return t.every(x => x === 0) ? 'no stage is served yet: any will do, and the tie is broken by peer id' : 'nobody serves it yet'
  return `it is the slowest stage (${t.map(x => x.toFixed(2)).join(' / ')} microbatches/s per stage)`
}
