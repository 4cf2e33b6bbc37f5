// The swarm simulator (bench/simulate.ts) driving the real rule: small configurations reach the
// balance goal, refill a killed stage, stay deterministic per seed, and hysteresis damps flapping.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { lptBottleneck, simulate, simulateReport } from '../bench/simulate.ts'

const small = { nodes: 60, stages: 4, hours: 1.5, rampS: 300, lifetimeH: 2, killAtH: 1 }

describe('scheduler simulation', function () {
  this.timeout(120_000)

  it('LPT oracle: largest first onto the least-served stage', () => {
    // 4 | 3, then 3 onto 3, 2 onto 4, 2 onto 6 (ties: the lower stage): [8, 6]; the true optimum is 7 | 7
    assert.equal(lptBottleneck([4, 3, 3, 2, 2], [1, 1]), 6)
    assert.equal(lptBottleneck([1], [1, 1]), 0)
  })

  it('a small churning swarm joins balanced, never leaves a stage empty, and refills a killed stage', () => {
    const s = simulate({ ...small, seed: 3 })
    assert.notEqual(s.convergeRounds, null)
    assert.ok(s.balance >= 0.8, `balance ${s.balance}`)
    assert.ok(s.balance > s.balanceRandom, `balance ${s.balance} vs random ${s.balanceRandom}`)
    assert.ok(s.throughput >= 0.8 * s.throughputOracle, `throughput ${s.throughput} vs oracle ${s.throughputOracle}`)
    assert.equal(s.emptyStageS, 0)
    assert.ok(s.deaths > 0 && s.joins > small.nodes, 'churn happened')
    // the killed stage is refilled within TTL + check delay + drain + fetch (20 + 10 + 5 + 30 s) and some slack
    assert.ok(s.killRefillS !== null && s.killRefillS < 90, `refill ${s.killRefillS}`)
    assert.ok(s.killRebalanceS !== null && s.killRebalanceS <= 600, `rebalance ${s.killRebalanceS}`)
  })

  it('rebalancing alone converges from a random assignment', () => {
    const s = simulate({ ...small, seed: 5, start: 'random', lifetimeH: 0, killAtH: null, hours: 1 })
    assert.ok(s.convergeRounds !== null && s.convergeRounds <= 5, `converged after ${s.convergeRounds} epochs`)
    assert.ok(s.balance >= 0.8, `balance ${s.balance}`)
    assert.ok(s.moves > 0)
  })

  it('is deterministic per seed', () => {
    const strip = ({ wallS, ...rest }: ReturnType<typeof simulate>): object => rest
    const a = simulate({ ...small, seed: 11, hours: 0.5 })
    const b = simulate({ ...small, seed: 11, hours: 0.5 })
    const c = simulate({ ...small, seed: 12, hours: 0.5 })
    assert.deepEqual(strip(a), strip(b))
    assert.notDeepEqual(strip(a), strip(c))
  })

  it('damps flapping: with noisy throughput, hysteresis and cool-down cut moves', () => {
    const noisy = { ...small, seed: 9, start: 'random' as const, lifetimeH: 0, killAtH: null, hours: 1, noise: 0.2, capacitySigma: 0.2 }
    const damped = simulate(noisy)
    const undamped = simulate({ ...noisy, hysteresis: 0, cooldownS: 0 })
    assert.ok(undamped.movesPerNodeHour > 3 * damped.movesPerNodeHour, `undamped ${undamped.movesPerNodeHour} vs damped ${damped.movesPerNodeHour} moves/node/h`)
    assert.ok(damped.balance >= 0.8, `damped balance ${damped.balance}`)
  })

  it('`layerswarm simulate --json` prints one report in the bench shape', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['bin/layerswarm.js', 'simulate', '--nodes', '40', '--stages', '4', '--hours', '0.5', '--kill-at-h', 'none', '--seed', '2', '--json'], { cwd: new URL('..', import.meta.url).pathname })
    const report = JSON.parse(stdout)
    assert.equal(report.suite, 'simulate')
    assert.equal(typeof report.machine.cores, 'number')
    const names = report.results.map((r: { name: string }) => r.name)
    for (const n of ['converge_rounds', 'balance', 'moves_per_node_hour', 'empty_stage_seconds']) assert.ok(names.includes(n), n)
    const balance = report.results.find((r: { name: string }) => r.name === 'balance')
    assert.equal(balance.baseline.name, 'random assignment')
    assert.ok(Math.abs(balance.ratio - balance.value / balance.baseline.value) < 0.01)
    // the in-process report agrees with the CLI's for the same seed
    const direct = simulateReport({ nodes: 40, stages: 4, hours: 0.5, killAtH: null, seed: 2 })
    assert.deepEqual(JSON.parse(JSON.stringify(direct.results)), report.results)
  })
})
