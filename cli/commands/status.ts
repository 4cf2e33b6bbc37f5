// `layerswarm status`: ask the node running on a data dir (through its control socket) for its status.
// Exit 1 with a clear message when no node runs there.
import type { Command } from 'commander'
import { resolve } from 'node:path'
import { queryControl } from '../../core/node/control-endpoint.ts'
import { defaultDataDir } from '../../core/node/data-dir.ts'
import { ControlEndpointError } from '../../core/node/node-errors.ts'
import type { NodeStatus } from '../../core/node/create-node.ts'
import { ENV } from '../config.ts'

export function register (program: Command): void {
  program.command('status')
    .description('print the status of the node running on a data dir')
    .option('--data-dir <dir>', `data dir of the node (default: $${ENV.dataDir} or ~/.layerswarm)`)
    .option('--json', 'print one JSON object')
    .action(async (flags: { dataDir?: string, json?: boolean }) => {
      const dir = resolve(flags.dataDir ?? process.env[ENV.dataDir] ?? defaultDataDir())
      const status = await queryControl(dir, '/status') as NodeStatus
      if (status == null || typeof status.peerId !== 'string') throw new ControlEndpointError(`the node on ${dir} sent a status without a peerId`)
      if (flags.json === true) {
        process.stdout.write(JSON.stringify(status) + '\n')
        return
      }
      const lines = [
        `peer id:    ${status.peerId}`,
        `network:    ${status.network}${status.bootstrapNode ? ' (bootstrap node)' : ''}`,
        `pid:        ${status.pid}, up ${status.uptimeS} s`,
        `plugins:    ${status.plugins.length > 0 ? status.plugins.join(', ') : '(none)'}`,
        `dht:        ${status.dht.mode}, ${status.dht.routingTableSize} peers in the routing table`,
        `peers:      ${status.peers.length}`,
        ...status.peers.map(p => `  ${p}`),
        'addresses:',
        ...status.addresses.map(a => `  ${a}`),
        ...(status.bootstrap.length > 0 ? ['bootstrap:'] : []),
        ...status.bootstrap.map(b => `  ${b.connected ? 'connected  ' : `unreachable (${b.failures} failures)`} ${b.addr}`)
      ]
      process.stdout.write(lines.join('\n') + '\n')
    })
}
