import { startSwarm } from '../averaging-helpers.ts'
import { DhtGroupFinder } from '../../core/averaging/index.ts'
import { createLogger } from '../../core/logger.ts'
describe('dbg', function () {
  this.timeout(120000)
  it('finder', async () => {
    const swarm = await startSwarm(5)
    try {
      const name = '/x/' + Date.now()
      const t0 = Date.now()
      const res = await Promise.all(swarm.nodes.map(async (n, i) => {
        const f = new DhtGroupFinder(n.libp2p, { log: createLogger({ level: 'debug', format: 'json' }) })
        const r = await f.find({ name, self: n.peerId, deadline: Date.now() + 8000, expected: 5 })
        return [i, r.length, Date.now() - t0]
      }))
      console.log(res)
    } finally { await swarm.stop() }
  })
})
