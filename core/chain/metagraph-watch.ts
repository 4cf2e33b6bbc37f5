// Keeps a subnet's metagraph fresh without ever making the node wait on the chain.
//
//   first    start() reads the first metagraph, retrying with backoff until `timeoutMs`, then throws
//            ChainUnreachableError (a node must know who is registered before it admits anyone)
//   refresh  every `refreshBlocks` blocks: new heads come from the reader's onHead where it has one;
//            a poll of head() every `pollMs` covers a reader without it, or a subscription gone quiet
//   outage   a failed read keeps the last metagraph, logs once per outage (and once when the chain
//            is back), and retries with backoff; nothing waits on it
import type { Logger } from '../contracts/logger.ts'
import { silentLogger } from '../logger.ts'
import { backoffDelay } from '../node/bootstrap-dialer.ts'
import { deadline, pause } from '../timers.ts'
import { ChainUnreachableError, SubnetNotFoundError } from './errors.ts'
import type { ChainReader, Metagraph } from './types.ts'

/** A reader that may push new heads (ChainClient does). */
export type WatchedReader = ChainReader & { onHead?: (cb: (head: number) => void) => () => void }

export interface MetagraphWatchInit {
  readonly reader: WatchedReader
  readonly netuid: number
  /** Blocks between refreshes. Default 5. */
  readonly refreshBlocks?: number
  /** Period of the head() poll (ms). Default 12000 (one block). */
  readonly pollMs?: number
  /** Backoff of failed reads (ms). Defaults 1000 and 30000. */
  readonly initialDelayMs?: number
  readonly maxDelayMs?: number
  /** For error messages. */
  readonly endpoint?: string
  /** Every metagraph read, the first included. */
  readonly onMetagraph: (m: Metagraph) => void
  readonly now?: () => number
  readonly log?: Logger
}

export interface MetagraphWatchStatus {
  /** The last read (of the head or the metagraph) succeeded. */
  connected: boolean
  head?: number
  block?: number
  /** Seconds since the current metagraph was read. */
  ageS?: number
  failures: number
  lastError?: string
}

export class MetagraphWatch {
  private graph: Metagraph | undefined
  private fetchedAt = 0
  private head: number | undefined
  private connected = false
  private failures = 0
  private lastError: string | undefined
  private readonly controller = new AbortController()
  private loop: Promise<void> | undefined
  private unsubscribe: (() => void) | undefined
  private wake: (() => void) | undefined
  private readonly refreshBlocks: number
  private readonly now: () => number
  private readonly log: Logger

  constructor (private readonly init: MetagraphWatchInit) {
    this.refreshBlocks = Math.max(1, init.refreshBlocks ?? 5)
    this.now = init.now ?? Date.now
    this.log = (init.log ?? silentLogger).forComponent('layerswarm:chain:metagraph')
  }

  current (): Metagraph | undefined {
    return this.graph
  }

  /** Reads the first metagraph (see the top of this file), then keeps it fresh until stop(). */
  async start (timeoutMs: number, signal?: AbortSignal): Promise<Metagraph> {
    const guard = deadline(timeoutMs, signal, this.controller.signal)
    try {
      let failures = 0
      for (;;) {
        try {
          if (!await this.init.reader.subnetExists(this.init.netuid, { signal: guard.signal })) throw new SubnetNotFoundError(this.init.netuid)
          await this.refresh(guard.signal)
          break
        } catch (err) {
          if (err instanceof SubnetNotFoundError) throw err
          if (guard.signal.aborted) {
            signal?.throwIfAborted()
            throw new ChainUnreachableError(this.init.endpoint ?? 'the chain', err)
          }
          failures++
          this.log.debug('first metagraph not read; retrying', { failures, error: (err as Error).message })
          await pause(backoffDelay(failures, this.init.initialDelayMs ?? 1000, this.init.maxDelayMs ?? 30_000, Math.random), guard.signal).catch(() => {})
        }
      }
    } finally {
      guard.clear()
    }
    this.unsubscribe = this.init.reader.onHead?.(head => { this.onHead(head) })
    this.loop = this.run()
    return this.graph!
  }

  async stop (): Promise<void> {
    this.controller.abort()
    this.unsubscribe?.()
    this.wake?.()
    await this.loop
  }

  status (): MetagraphWatchStatus {
    return {
      connected: this.connected,
      ...(this.head != null ? { head: this.head } : {}),
      ...(this.graph != null ? { block: this.graph.block, ageS: Math.round((this.now() - this.fetchedAt) / 1000) } : {}),
      failures: this.failures,
      ...(this.lastError != null ? { lastError: this.lastError } : {})
    }
  }

  private onHead (head: number): void {
    this.head = head
    if (this.due()) this.wake?.()
  }

  private due (): boolean {
    return this.head != null && this.graph != null && this.head >= this.graph.block + this.refreshBlocks
  }

  /** Polls the head, refreshes when due, backs off while the chain is unreachable. */
  private async run (): Promise<void> {
    const signal = this.controller.signal
    const pollMs = this.init.pollMs ?? 12_000
    while (!signal.aborted) {
      let delay = pollMs
      try {
        if (!this.due()) this.head = await this.init.reader.head({ signal })
        if (this.due()) await this.refresh(signal)
        this.ok()
      } catch (err) {
        if (signal.aborted) return
        this.fail(err)
        delay = backoffDelay(this.failures, this.init.initialDelayMs ?? 1000, this.init.maxDelayMs ?? 30_000, Math.random)
      }
      // a pushed head that makes a refresh due cuts the wait short
      await new Promise<void>(resolve => {
        const timer = setTimeout(done, delay)
        function done (): void { clearTimeout(timer); resolve() }
        this.wake = done
        if (signal.aborted || (this.failures === 0 && this.due())) done()
      })
      this.wake = undefined
    }
  }

  private async refresh (signal: AbortSignal): Promise<void> {
    const m = await this.init.reader.metagraph(this.init.netuid, { signal })
    this.graph = m
    this.fetchedAt = this.now()
    this.head = Math.max(this.head ?? 0, m.block)
    this.ok()
    this.log.debug('metagraph read', { netuid: m.netuid, block: m.block, neurons: m.neurons.length })
    this.init.onMetagraph(m)
  }

  private ok (): void {
    if (this.failures > 0) this.log.info('chain reachable again', { after: this.failures, block: this.graph?.block })
    this.connected = true
    this.failures = 0
    this.lastError = undefined
  }

  private fail (err: unknown): void {
    this.connected = false
    this.failures++
    this.lastError = (err as Error)?.message ?? String(err)
    // once per outage: the node keeps working from what it knows
    if (this.failures === 1) this.log.warn('chain unreachable; keeping the last metagraph and retrying', { block: this.graph?.block, error: this.lastError })
  }
}
