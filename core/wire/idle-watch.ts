// The idle limit of a framed stream: while a frame is half received or a write waits for the
// transport to drain, no bytes moving for `idleMs` means a stalled or slow-loris peer. One timer,
// armed only while busy and re-armed for the remaining time after progress, unref'd.

export type IdleWhere = 'receiving' | 'sending'

export class IdleWatch {
  private timer: ReturnType<typeof setTimeout> | undefined
  private last = Date.now()

  /** `busy()` says what the stream is in the middle of (null: nothing, at rest); `onIdle` fires once. */
  constructor (readonly idleMs: number, private readonly busy: () => IdleWhere | null, private readonly onIdle: (where: IdleWhere) => void) {}

  /** Bytes moved. */
  progress (): void {
    this.last = Date.now()
  }

  /** Starts watching if the stream is busy and no check is pending. */
  arm (): void {
    if (this.timer != null) return
    this.schedule(this.idleMs)
  }

  clear (): void {
    if (this.timer != null) clearTimeout(this.timer)
    this.timer = undefined
  }

  private schedule (ms: number): void {
    this.timer = setTimeout(() => { this.check() }, ms)
    this.timer.unref?.()
  }

  private check (): void {
    this.timer = undefined
    const where = this.busy()
    if (where == null) return
    const quiet = Date.now() - this.last
    if (quiet >= this.idleMs) this.onIdle(where)
    else this.schedule(this.idleMs - quiet)
  }
}
