// `layerswarm keys`: print the node's peer id (creating its identity key if absent), or a new
// pre-shared key for a private swarm.
import type { Command } from 'commander'
import { loadOrCreateIdentity } from '../../core/node/identity.ts'
import { defaultDataDir } from '../../core/node/data-dir.ts'
import { generateSwarmKey } from '../../core/node/swarm-key.ts'
import { ENV } from '../config.ts'

export function register (program: Command): void {
  program.command('keys')
    .description('print the peer id of a data dir (creating the identity key if absent)')
    .option('--data-dir <dir>', `data dir (default: $${ENV.dataDir} or ~/.layerswarm)`)
    .option('--json', 'print one JSON object: {"peerId", "keyFile", "created"}')
    .option('--new-swarm-key', 'print a new random pre-shared key (swarm.key format) for a private network, and exit')
    .action(async (flags: { dataDir?: string, json?: boolean, newSwarmKey?: boolean }) => {
      if (flags.newSwarmKey === true) {
        process.stdout.write(generateSwarmKey())
        return
      }
      const id = await loadOrCreateIdentity(flags.dataDir ?? process.env[ENV.dataDir] ?? defaultDataDir())
      if (flags.json === true) {
        process.stdout.write(JSON.stringify({ peerId: id.peerId, keyFile: id.file, created: id.created }) + '\n')
      } else {
        process.stdout.write(`${id.peerId}\n`)
        if (id.created) process.stderr.write(`created a new identity key in ${id.file}\n`)
      }
    })
}
