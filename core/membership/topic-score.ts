// Gossip topic scoring shared by the node's topics (membership heartbeats, verification evidence):
// each REJECTed message costs its forwarder (gossipsub's P4, invalid deliveries) and nothing else is
// scored, since these topics carry small, infrequent messages whose mesh quality matters little.
import type { GossipSub } from '@libp2p/gossipsub'
import { createTopicScoreParams, type TopicScoreParams } from '@libp2p/gossipsub/score'
import type { Logger } from '../contracts/logger.ts'

type ScoredGossipSub = GossipSub & { score?: { params?: { topics?: Record<string, TopicScoreParams> } } }

/** Scores `topic` by invalid deliveries only (weight default -10); warns where gossipsub exposes no score. */
export function scoreInvalidDeliveries (pubsub: GossipSub, topic: string, log: Logger, what: string, weight = -10): void {
  const topics = (pubsub as ScoredGossipSub).score?.params?.topics
  if (topics == null) {
    log.warn(`gossipsub exposes no peer score; invalid ${what} will not lower scores`)
    return
  }
  topics[topic] = createTopicScoreParams({
    topicWeight: 1,
    timeInMeshWeight: 0,
    firstMessageDeliveriesWeight: 0,
    meshMessageDeliveriesWeight: 0,
    meshFailurePenaltyWeight: 0,
    invalidMessageDeliveriesWeight: weight,
    // the count halves in about 11 minutes (decay applies every decayInterval, 1 s by default)
    invalidMessageDeliveriesDecay: 0.999
  })
}
