// Group formation: who averages with whom in a round.
//
// A stage's nodes are laid on a virtual Moshpit grid (side M = the target group size, d dims, M^d
// >= the stage's size). Coordinates come from a hash of (peer, epoch, dim), an epoch being d
// rounds; in round r the group is "same coordinates in every dim except r mod d", so each round
// averages along one axis and consecutive rounds mix along different axes: all nodes converge to
// the stage average (exactly after d rounds on a full grid with equal weights; geometrically on a
// hashed, uneven grid) while each group stays small. A stage no larger than the target group size
// is one group.
//
// Members of group g of (run, stage, round) announce themselves by providing the DHT key
// dhtKey(groupName(...)) and collect the other providers (findProviders) until a deadline. Each
// member greets every member it finds (a 'join' request, averager.ts), which adds it to the other's
// set and returns the other's set, whose members it then greets in turn: one side finding the other
// in the DHT is enough, and sets merge transitively, with every entry confirmed by the peer itself.
// The group is the sorted peer-id list found; every message of the round carries a digest of it, so
// two members with different views never mix shards (they lose each other's data instead).
//
// Sybil provider records: anyone can ADD_PROVIDER a group key (24 bare identities doing so for the
// coming rounds left honest nodes averaging alone: issue 15). With `isPartner` (the membership view:
// peers it lists at the stage) the DHT finder takes only partners from the records; the others are
// counted and logged, never greeted, and cannot crowd a partner out of a round.
import { dhtKey } from '../node/dht-keys.ts'
import { hash32 } from '../hash.ts'
import { silentLogger } from '../logger.ts'
import type { Logger } from '../contracts/logger.ts'
import type { Libp2p } from '@libp2p/interface'
import { deadline, sleep, withDeadline } from '../timers.ts'

export interface MoshpitGrid {
  /** Coordinates per dim (the target group size). */
  readonly side: number
  /** Number of dims; 0 means a single group. */
  readonly dims: number
}

/** The grid for a stage of about `members` nodes and groups of about `groupSize`. */
export function moshpitGrid (members: number, groupSize: number): MoshpitGrid {
  const side = Math.max(2, Math.floor(groupSize))
  if (!(members > side)) return { side, dims: 0 }
  return { side, dims: Math.ceil(Math.log(members) / Math.log(side) - 1e-9) }
}

export { hash32 } from '../hash.ts'

/** Index of `peer`'s group in `round`: 0 .. side^(dims-1) - 1 (always 0 for a single group). */
export function moshpitGroupIndex (peer: string, round: number, grid: MoshpitGrid): number {
  if (grid.dims <= 1) return 0
  const epoch = Math.floor(round / grid.dims)
  const free = round % grid.dims
  let index = 0
  for (let k = 0; k < grid.dims; k++) {
    if (k === free) continue
    index = index * grid.side + hash32(`${peer}|${epoch}|${k}`) % grid.side
  }
  return index
}

/** Known members split into this round's groups (pure; used by simulations and tests). */
export function moshpitGroups (peers: readonly string[], round: number, grid: MoshpitGrid): string[][] {
  const groups = new Map<number, string[]>()
  for (const p of peers) {
    const g = moshpitGroupIndex(p, round, grid)
    const list = groups.get(g) ?? []
    list.push(p)
    groups.set(g, list)
  }
  return [...groups.keys()].sort((a, b) => a - b).map(g => (groups.get(g) as string[]).sort())
}

/**
 * The group from the peers found: sorted, at most `maxSize`. When more were found (an uneven
 * hashed grid), the ones with the lowest hash of (peer, round) stay: every member that found the
 * same set keeps the same subset.
 */
export function selectGroup (found: Iterable<string>, maxSize: number, round: number): string[] {
  let list = [...new Set(found)]
  if (list.length > maxSize) {
    list = list.map(p => ({ p, h: hash32(`${p}|cap|${round}`) }))
      .sort((a, b) => a.h - b.h || (a.p < b.p ? -1 : 1))
      .slice(0, maxSize).map(x => x.p)
  }
  return list.sort()
}

/** Name of a group's DHT key: one per (run, stage, round, group index). */
export function groupName (runId: string, stage: number, round: number, group: number): string {
  return `/layerswarm/${runId}/averaging/${stage}/${round}/${group}`
}

/** A short digest of a member list (order included): FNV-based, 16 hex chars, for equality checks only. */
export function groupDigest (members: readonly string[]): string {
  const s = members.join(',')
  return hash32(`a|${s}`).toString(16).padStart(8, '0') + hash32(`b|${s}|${members.length}`).toString(16).padStart(8, '0')
}

export interface GroupQuery {
  /** groupName(...) of the group. */
  readonly name: string
  /** This node's peer id (always a member). */
  readonly self: string
  /** Unix ms: stop looking then. */
  readonly deadline: number
  /** Members found so far, shared with the caller (who adds peers that contacted it directly). */
  readonly found: Set<string>
  /** Called once per newly found member (the caller greets it, so discovery is symmetric). */
  readonly onFound?: (peer: string) => void
  /** Aborted by the caller when the group is complete: return at once. */
  readonly stop?: AbortSignal
  /** Aborts the round: find() rejects. */
  readonly signal?: AbortSignal
  /** Whether a peer known by other means (the gossiped stage directory) falls in this group's grid cell this round. */
  readonly inGroup?: (peer: string) => boolean
}

/** Finds the members of a group. The default is the DHT; a caller that knows the group may supply its own. */
export interface GroupFinder {
  find(query: GroupQuery): Promise<void>
}

export interface DhtGroupFinderInit {
  /** Interval between findProviders queries (ms). Default 200. */
  readonly pollMs?: number
  /** Whether a provider may be a partner (the view lists it at the stage); default every provider. */
  readonly isPartner?: (peer: string) => boolean
  readonly log?: Logger
}

type ContentRoutingLibp2p = Pick<Libp2p, 'contentRouting'>

/** Provide the group key, then poll findProviders until the deadline or until the caller says stop. */
export class DhtGroupFinder implements GroupFinder {
  private readonly pollMs: number
  private readonly log: Logger
  private readonly isPartner: ((peer: string) => boolean) | undefined

  constructor (private readonly libp2p: ContentRoutingLibp2p, init: DhtGroupFinderInit = {}) {
    this.pollMs = init.pollMs ?? 200
    this.isPartner = init.isPartner
    this.log = (init.log ?? silentLogger).forComponent('layerswarm:averaging:group')
  }

  async find (q: GroupQuery): Promise<void> {
    const key = await dhtKey(q.name)
    // our record goes on being published in the background until the deadline even when we stop
    // looking early: the others still have to find us
    const providing = deadline(q.deadline - Date.now(), q.signal)
    this.libp2p.contentRouting.provide(key, { signal: providing.signal })
      .then(() => { this.log.trace('group key provided', { group: q.name }) })
      .catch(err => { this.log.debug('provide failed', { group: q.name, error: (err as Error).message }) })
      .finally(() => { providing.clear() })
    const stopped = (): boolean => q.stop?.aborted === true
    const strangers = new Set<string>()
    try {
      await this.poll(q, key, strangers, stopped)
    } finally {
      if (strangers.size > 0) this.log.warn('group key provided by peers the view does not list at the stage; left out', { group: q.name, strangers: strangers.size, sample: [...strangers].slice(0, 3) })
    }
  }

  private async poll (q: GroupQuery, key: Awaited<ReturnType<typeof dhtKey>>, strangers: Set<string>, stopped: () => boolean): Promise<void> {
    while (Date.now() < q.deadline && !stopped()) {
      q.signal?.throwIfAborted()
      try {
        // a query slowed by a loaded machine still yields what it found so far
        await withDeadline(Math.min(5000, q.deadline - Date.now()), [q.signal, q.stop], async signal => {
          for await (const p of this.libp2p.contentRouting.findProviders(key, { signal })) {
            const id = p.id.toString()
            if (id !== q.self && this.isPartner != null && !this.isPartner(id)) {
              strangers.add(id)
              continue
            }
            if (!q.found.has(id)) {
              q.found.add(id)
              q.onFound?.(id)
            }
            if (stopped()) break
          }
        })
      } catch (err) {
        q.signal?.throwIfAborted()
        if (!stopped()) this.log.debug('findProviders failed', { group: q.name, error: (err as Error).message })
      }
      if (stopped()) break
      await sleep(Math.min(this.pollMs, Math.max(0, q.deadline - Date.now())), q.signal)
    }
  }
}

/** A fixed member list (a caller that learnt the group elsewhere, e.g. from gossip, or a benchmark). */
export class StaticGroupFinder implements GroupFinder {
  constructor (private readonly members: readonly string[]) {}
  async find (q: GroupQuery): Promise<void> {
    for (const m of this.members) {
      if (!q.found.has(m)) {
        q.found.add(m)
        if (m !== q.self) q.onFound?.(m)
      }
    }
  }
}
