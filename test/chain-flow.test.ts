// The chain's whole flow in one test (issue 14): a local subtensor chain (chopsticks on raonet.json),
// a subnet, wallets, three miners of stage 1 (fast, slow, cheating) with the neighbours a pipeline
// needs, a staked validator; every node knows only the chain endpoint, finds the others through the
// axons they served, trains, and the validator's weights are read back from the chain.
//
// The runtime refuses to serve a loopback axon, so the flow runs in a network namespace this test
// creates: every node listens on its own 10.77.0.x address there (addresses on the namespace's
// loopback that exist nowhere else) and the chain listens on the namespace's 127.0.0.1. The flow
// itself is test/chain-flow-run.ts, run in the namespace as a child process that prints one RESULT
// line; the namespace and everything in it are removed when the test ends.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Netns, netnsUnavailable } from './netns-helpers.ts'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const spec = join(root, '..', 'shared', 'chain', 'raonet.json')
/** The flow's own bound (the child is killed past it). */
const FLOW_TIMEOUT_MS = 420_000

interface FlowResult {
  seconds: number
  netuid: number
  steps: number
  trainLoss: number | null
  uids: Record<string, number>
  weights: Record<string, number>
  convicted: boolean
  setterStatus: unknown
}

describe('chain: the full flow (local chain, wallets, registration, bootstrap from the metagraph, weights)', function () {
  this.timeout(FLOW_TIMEOUT_MS + 60_000)
  let ns: Netns | undefined

  before(function () {
    const why = !existsSync(spec) ? `${spec} is missing (the chain tests read ../shared/chain)` : netnsUnavailable()
    if (why != null) {
      console.log(`      skipped: ${why}`)
      this.skip()
    }
  })

  after(() => { ns?.destroy() })

  it('registers, bootstraps from the chain, trains, and the validator\'s weights rank fast > slow > cheater = 0', async () => {
    ns = Netns.create('chain')
    for (let i = 1; i <= 6; i++) ns.addHostAddress(`10.77.0.${i + 1}`)
    const child = ns.spawn(process.execPath, ['--import', 'tsx', join(root, 'test', 'chain-flow-run.ts')], {
      cwd: root, env: { ...process.env, LAYERSWARM_CHAIN_SPEC: spec }, stdio: ['ignore', 'pipe', 'pipe']
    })
    let out = ''
    let err = ''
    child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr?.on('data', (d: Buffer) => { err += d.toString(); if (err.length > 200_000) err = err.slice(-100_000) })
    const code = await new Promise<number | null>(resolve => {
      const timer = setTimeout(() => { child.kill('SIGKILL') }, FLOW_TIMEOUT_MS)
      child.once('exit', c => { clearTimeout(timer); resolve(c) })
    })
    const line = out.split('\n').find(l => l.startsWith('RESULT '))
    if (code !== 0 || line == null) throw new Error(`the flow failed (exit ${String(code)}):\n${err.slice(-6000)}`)
    const r = JSON.parse(line.slice('RESULT '.length)) as FlowResult
    if (process.env.LAYERSWARM_FLOW_DEBUG != null) console.log(JSON.stringify(r, null, 1))
    console.log(`      flow: ${r.seconds.toFixed(1)} s, netuid ${r.netuid}, ${r.steps} steps, last training loss ${String(r.trainLoss)}, weights ${JSON.stringify(r.weights)}`)
    assert.equal(r.convicted, true, 'the validator convicted the cheater')
    assert.ok((r.weights.fast ?? 0) > (r.weights.slow ?? 0), 'the fast honest miner outranks the slow one')
    assert.ok((r.weights.slow ?? 0) > 0, 'an honest slow miner still earns')
    assert.equal(r.weights.cheat ?? 0, 0, 'the convicted cheater gets nothing')
  })
})
