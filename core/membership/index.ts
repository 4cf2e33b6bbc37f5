// The run's one membership view (core/contracts/membership.ts): the heartbeat format and its checks,
// the view, and the gossip service that routing, averaging, the scheduler and the end of a run read.
export * from './errors.ts'
export * from './heartbeat.ts'
export { MemberView } from './view.ts'
export { createMembership, MEMBERSHIP_VERSION, MembershipService, pinnedPlacement } from './membership-service.ts'
export type { MembershipHost, MembershipInit } from './membership-service.ts'
export { membershipInit } from './membership-options.ts'
