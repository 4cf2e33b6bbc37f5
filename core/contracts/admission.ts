// Admission contract: who may take part in this node's run. With `start --chain`, a peer is admitted
// iff it presented a binding of its peer id to a hotkey (core/chain/binding.ts) that verifies, and that
// hotkey is registered on the subnet in the current metagraph (core/chain/admission.ts implements it,
// bound as Tokens.Admission). The node's PeerJudge holds the policy (PeerJudge.useAdmission); without
// one every peer is admitted, so a node without --chain behaves exactly as before.

/** What this node knows of a peer now: 'unknown' means it has not asked (or must ask again). */
export type AdmissionState = 'admitted' | 'refused' | 'unknown'

export interface PeerAdmission {
  /** Synchronous: the cached verdict (gossip validators cannot wait). */
  state (peer: string): AdmissionState
  /**
   * Resolves once `peer` is admitted, asking it for its binding if needed (concurrent asks share one
   * exchange); throws NotAdmittedError (verdict 'reject') when it is refused, or a typed 'ignore'
   * error when the peer could not be asked (unreachable, timed out).
   */
  admit (peer: string, signal?: AbortSignal): Promise<void>
  /** The hotkey (ss58) the peer's verified binding names, if one was verified. */
  hotkeyOf (peer: string): string | undefined
}
