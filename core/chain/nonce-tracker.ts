// Local nonces per signer. Signing back to back with the chain's idea of the next nonce fails with
// `1010 invalid stale` (the previous extrinsic is in the pool but not yet counted), so the first
// nonce of a signer comes from the chain (system.accountNextIndex) and each later one is the last
// plus one. Submissions of one signer run one at a time up to the pool's acceptance, so two
// concurrent calls never take the same nonce.

export type NonceSource = (address: string) => Promise<number>

export class NonceTracker {
  private readonly nextNonce = new Map<string, number>()
  private readonly tails = new Map<string, Promise<void>>()
  private readonly source: NonceSource

  constructor (source: NonceSource) {
    this.source = source
  }

  /**
   * Runs `submit` with the signer's next nonce, after the signer's earlier submissions got theirs.
   * When `submit` resolves the nonce counts as used; when it throws, the next call asks the chain
   * again (the extrinsic may or may not have reached the pool).
   */
  async withNonce<T> (address: string, submit: (nonce: number) => Promise<T>): Promise<T> {
    const before = this.tails.get(address) ?? Promise.resolve()
    let release!: () => void
    const mine = new Promise<void>(resolve => { release = resolve })
    const tail = before.then(async () => await mine)
    this.tails.set(address, tail)
    try {
      await before
      let nonce = this.nextNonce.get(address)
      if (nonce == null) {
        nonce = await this.source(address)
      }
      try {
        const out = await submit(nonce)
        this.nextNonce.set(address, nonce + 1)
        return out
      } catch (err) {
        this.nextNonce.delete(address)
        throw err
      }
    } finally {
      release()
      if (this.tails.get(address) === tail) this.tails.delete(address)
    }
  }

  /** Forgets the signer's nonce: the next submission asks the chain. */
  resync (address: string): void {
    this.nextNonce.delete(address)
  }

  /** The nonce the next submission of `address` would use, if known locally. */
  peek (address: string): number | undefined {
    return this.nextNonce.get(address)
  }
}

/** The pool's answers that mean our nonce was wrong, not the extrinsic: resync and try once more. */
export function isStaleNonceError (err: unknown): boolean {
  const msg = String((err as Error)?.message ?? err)
  return /1010|invalid stale|stale|priority is too low|Transaction is outdated|AncientBirthBlock|1014/i.test(msg)
}
