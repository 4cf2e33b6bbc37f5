import { startSwarm, RUN_ID, testVector } from '../averaging-helpers.ts'
import { Averager } from '../../core/averaging/index.ts'
import { createLogger } from '../../core/logger.ts'
describe('dbg', function () {
  this.timeout(120000)
  it('2', async () => {
    const swarm = await startSwarm(2)
    const list = swarm.nodes.map(n => new Averager(n.libp2p, { runId: RUN_ID, joinMs: 5000, log: createLogger({ level: 'debug', format: 'json' }) }))
    try {
      for (const a of list) await a.start()
      const r = await Promise.all(list.map(async (a, i) => await a.round({ round: 1, stage: 1, params: testVector(i, 1000), weight: 1, stageSize: 2 })))
      console.log(JSON.stringify(r.map(x => ({ ...x, averaged: undefined }))))
    } catch (e) { console.log('ERR', e) } finally { for (const a of list) await a.stop(); await swarm.stop() }
  })
})
