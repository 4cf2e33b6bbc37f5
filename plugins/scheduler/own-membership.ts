// TRANSITIONAL: a membership view the plugin makes for its node when the runtime has not bound one
// as Tokens.Membership (until createNode does so for every training node; then this file goes).
// It is the one place the plugin reaches past the contracts into core.
import type { Libp2p } from '@libp2p/interface'
import type { Logger } from '../../core/contracts/logger.ts'
import { ConfigError } from '../../core/contracts/index.ts'
import { createMembership, membershipInit, type MembershipHost, type MembershipService } from '../../core/membership/index.ts'

/** The membership of run `runId` (settings from NodeConfig.runtime.membership), not started. */
export function ownMembership (libp2p: Libp2p, runtime: Readonly<Record<string, unknown>>, runId: string, stages: number, log: Logger): MembershipService {
  const init = membershipInit({ ...runtime, runId, stages }, log)
  if (init == null) throw new ConfigError('the scheduler plugin needs a run id and a stage count')
  return createMembership(libp2p as unknown as MembershipHost, init)
}
