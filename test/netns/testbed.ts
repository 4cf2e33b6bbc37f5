// The multi-host test bed: N host namespaces, each with one address 10.80.0.x on a TUN device that
// the link emulator (link-emulator.py, in a namespace of its own) owns, and through which every
// packet to another host goes, shaped by the sender's link (delay, jitter, loss, rate) or dropped
// while a link is down. This kernel has no `tc netem`; the emulator does its job at the packet
// level, so TCP in the hosts sees real delay, loss and a real bandwidth cap.
//
// destroy() kills every process of every namespace (the emulator's included) and deletes them; the
// namespaces are Netns ones, removed on process exit too, so a test that fails leaves nothing.
import { type ChildProcess, type SpawnOptions } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LayerswarmError } from '../../core/errors.ts'
import { deadline } from '../../core/timers.ts'
import { Netns } from '../netns-helpers.ts'

const EMULATOR = join(dirname(fileURLToPath(import.meta.url)), 'link-emulator.py')

/** The emulator failed to start, answered a command with an error, or exited. */
export class LinkEmulatorError extends LayerswarmError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_LINK_EMULATOR', message, options)
  }
}

/** One host's link, applied to what it sends (as netem on its interface would). */
export interface LinkParams {
  /** One-way delay, ms. */
  readonly delayMs?: number
  /** Uniform jitter in [-jitterMs, +jitterMs], ms; order within a link is kept. */
  readonly jitterMs?: number
  /** Probability in [0, 1) that a packet is lost. */
  readonly loss?: number
  /** Bandwidth cap in bit/s (0: none). */
  readonly rateBps?: number
  /** Packets queued behind the rate cap before tail drop (default 1000, netem's). */
  readonly limit?: number
}

export interface LinkCounters {
  /** Packets forwarded, lost at random, tail-dropped, dropped while a link was down. */
  readonly fwd: number
  readonly lost: number
  readonly dropped: number
  readonly down: number
  readonly bytes: number
  readonly queued: number
  readonly up: boolean
}

/** Per-link counters by host address, at unix time t (s). */
export interface EmulatorStats { readonly t: number, readonly links: Record<string, LinkCounters> }

export interface TestbedHost {
  readonly index: number
  /** 10.80.0.(index + 2) */
  readonly ip: string
  readonly ns: Netns
}

export interface TestbedOptions {
  /** A few letters naming the test (namespace names). */
  readonly tag: string
  readonly hosts: number
  /** Every host's link at the start (default: no shaping). */
  readonly link?: LinkParams
  /** Seeds the emulator's loss and jitter. */
  readonly seed?: number
  /** Bound of the emulator's start (default 20 s). */
  readonly startTimeoutMs?: number
  readonly signal?: AbortSignal
}

export function hostIp (index: number): string {
  return `10.80.0.${index + 2}`
}

function linkWords (p: LinkParams): string[] {
  const w: string[] = []
  if (p.delayMs != null) w.push(`delay=${p.delayMs}`)
  if (p.jitterMs != null) w.push(`jitter=${p.jitterMs}`)
  if (p.loss != null) w.push(`loss=${p.loss}`)
  if (p.rateBps != null) w.push(`rate=${Math.round(p.rateBps)}`)
  if (p.limit != null) w.push(`limit=${p.limit}`)
  return w
}

export class Testbed {
  /** Answers of the emulator's stdout, in order, waiting for a reader. */
  private readonly waiters: Array<{ match: (line: string) => boolean, resolve: (line: string) => void, reject: (err: Error) => void }> = []
  private exitError?: LinkEmulatorError
  private stderr = ''
  /** The last periodic or requested counters. */
  lastStats?: EmulatorStats
  private readonly statsListeners = new Set<(s: EmulatorStats) => void>()

  private constructor (readonly hosts: readonly TestbedHost[], private readonly emuNs: Netns, private readonly emulator: ChildProcess) {
    let out = ''
    emulator.stdout?.on('data', (d: Buffer) => {
      out += d.toString()
      let nl: number
      while ((nl = out.indexOf('\n')) >= 0) {
        const line = out.slice(0, nl)
        out = out.slice(nl + 1)
        this.onLine(line)
      }
    })
    emulator.stderr?.on('data', (d: Buffer) => { this.stderr = (this.stderr + d.toString()).slice(-4000) })
    emulator.once('exit', (code, sig) => {
      this.exitError = new LinkEmulatorError(`the link emulator exited (${sig ?? String(code)}): ${this.stderr.trim()}`)
      for (const w of this.waiters.splice(0)) w.reject(this.exitError)
    })
  }

  /** Creates the namespaces and starts the emulator; everything is removed again if any of it fails. */
  static async create (opts: TestbedOptions): Promise<Testbed> {
    const made: Netns[] = []
    try {
      const emuNs = Netns.create(`${opts.tag}e`)
      made.push(emuNs)
      const hosts: TestbedHost[] = []
      for (let i = 0; i < opts.hosts; i++) {
        const ns = Netns.create(`${opts.tag}${i}`)
        made.push(ns)
        hosts.push({ index: i, ip: hostIp(i), ns })
      }
      const args = [EMULATOR, ...(opts.seed != null ? ['--seed', String(opts.seed)] : []),
        '--default', linkWords(opts.link ?? {}).join(','), ...hosts.flatMap(h => ['--host', h.ip, h.ns.name])]
      const child = emuNs.spawn('python3', args, { stdio: ['pipe', 'pipe', 'pipe'] })
      const bed = new Testbed(hosts, emuNs, child)
      await bed.expect(l => l === 'ready' || l.startsWith('err '), opts.startTimeoutMs ?? 20_000, opts.signal).then(l => {
        if (l !== 'ready') throw new LinkEmulatorError(`the link emulator did not start: ${l}`)
      })
      return bed
    } catch (err) {
      for (const ns of made) ns.destroy()
      throw err
    }
  }

  private onLine (line: string): void {
    if (line.startsWith('stats ')) {
      try {
        this.lastStats = JSON.parse(line.slice(6)) as EmulatorStats
        for (const l of this.statsListeners) l(this.lastStats)
      } catch {}
    }
    const i = this.waiters.findIndex(w => w.match(line))
    if (i >= 0) this.waiters.splice(i, 1)[0].resolve(line)
  }

  private async expect (match: (line: string) => boolean, timeoutMs: number, signal?: AbortSignal): Promise<string> {
    if (this.exitError != null) throw this.exitError
    const d = deadline(timeoutMs, signal)
    try {
      return await new Promise<string>((resolve, reject) => {
        const w = { match, resolve, reject }
        this.waiters.push(w)
        d.signal.addEventListener('abort', () => {
          const i = this.waiters.indexOf(w)
          if (i >= 0) this.waiters.splice(i, 1)
          reject(new LinkEmulatorError(`no answer from the link emulator: ${String((d.signal.reason as Error)?.message ?? d.signal.reason)}`))
        }, { once: true })
      })
    } finally {
      d.clear()
    }
  }

  /** Sends one command line; resolves on its "ok", throws LinkEmulatorError on its "err". */
  private async command (line: string, signal?: AbortSignal): Promise<void> {
    const answer = this.expect(l => l === `ok ${line}` || l.startsWith('err '), 10_000, signal)
    this.emulator.stdin?.write(line + '\n')
    const l = await answer
    if (l.startsWith('err ')) throw new LinkEmulatorError(`${line}: ${l.slice(4)}`)
  }

  host (ip: string): TestbedHost {
    const h = this.hosts.find(x => x.ip === ip)
    if (h == null) throw new LinkEmulatorError(`no host ${ip} on the test bed`)
    return h
  }

  async setLink (ip: string, params: LinkParams, signal?: AbortSignal): Promise<void> {
    await this.command(['set', ip, ...linkWords(params)].join(' '), signal)
  }

  /** Drops every packet to and from `ip` until linkUp(). */
  async linkDown (ip: string, signal?: AbortSignal): Promise<void> { await this.command(`down ${ip}`, signal) }
  async linkUp (ip: string, signal?: AbortSignal): Promise<void> { await this.command(`up ${ip}`, signal) }

  /** The counters now. */
  async stats (signal?: AbortSignal): Promise<EmulatorStats> {
    const answer = this.expect(l => l.startsWith('stats '), 10_000, signal)
    this.emulator.stdin?.write('stats\n')
    return JSON.parse((await answer).slice(6)) as EmulatorStats
  }

  /** One callback per second with the counters while any listener is on; returns the unsubscribe. */
  onStats (listener: (s: EmulatorStats) => void): () => void {
    this.statsListeners.add(listener)
    if (this.statsListeners.size === 1) this.emulator.stdin?.write('stats on\n')
    return () => {
      this.statsListeners.delete(listener)
      if (this.statsListeners.size === 0 && this.exitError == null) this.emulator.stdin?.write('stats off\n')
    }
  }

  /** Runs `command` in host `index`'s namespace. */
  spawn (index: number, command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
    return this.hosts[index].ns.spawn(command, args, options)
  }

  /** Kills every process of the bed and deletes its namespaces. Idempotent. */
  destroy (): void {
    for (const h of this.hosts) h.ns.destroy()
    this.emuNs.destroy()
  }
}
