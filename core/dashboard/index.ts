// The live dashboard: a web page served by a node (`start --dashboard`, `demo --dashboard`, `join`).
export { startDashboard, type Dashboard, type DashboardOptions } from './server.ts'
export { nodeSnapshotSource, type NodeSnapshotSourceOptions } from './source.ts'
export { buildDashboardSnapshot, type DashboardSnapshot, type SnapshotInput, type StatusJson } from './snapshot.ts'
export { parseDashboardAddress, DashboardListenError, DEFAULT_DASHBOARD_HOST, DEFAULT_DASHBOARD_PORT, type DashboardAddress } from './address.ts'
export { openNodeDashboard, type NodeDashboardOptions } from './node-dashboard.ts'
