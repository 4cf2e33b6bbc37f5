// `layerswarm simulate`: runs the scheduler's decision code (plugins/scheduler/rule.ts) over a
// simulated swarm (bench/simulate.ts) and reports convergence, balance, moves and empty-stage time
// against a random assignment and an LPT oracle. With --json, stdout carries exactly one JSON object
// in the common bench shape.
import type { Command } from 'commander'
import { ConfigError } from '../../core/errors.ts'
import { formatTable } from '../../bench/report.ts'
import { DEFAULT_SIM, simulateReport, type SimOptions } from '../../bench/simulate.ts'
import { intFlag, numFlag } from '../flags.ts'

interface SimulateFlags {
  nodes: string
  stages: string
  seed: string
  hours: string
  rampS: string
  lifetimeH: string
  capacitySigma: string
  noise: string
  heartbeatS: string
  ttlS: string
  epochS: string
  fetchS: string
  latencyMs: string
  loss: string
  hysteresis: string
  cooldownS: string
  maxMoves?: string
  stageCosts?: string
  killAtH: string
  start: string
  json?: boolean
}

export function simulateOptions (f: SimulateFlags): Partial<SimOptions> {
  const stages = intFlag('--stages', f.stages, 1)
  const o: Partial<SimOptions> = {
    nodes: intFlag('--nodes', f.nodes, 1),
    stages,
    seed: intFlag('--seed', f.seed, 0),
    hours: numFlag('--hours', f.hours, 0.01),
    rampS: numFlag('--ramp-s', f.rampS, 0),
    lifetimeH: numFlag('--lifetime-h', f.lifetimeH, 0),
    capacitySigma: numFlag('--capacity-sigma', f.capacitySigma, 0),
    noise: numFlag('--noise', f.noise, 0),
    heartbeatS: numFlag('--heartbeat-s', f.heartbeatS, 0.01),
    ttlS: numFlag('--ttl-s', f.ttlS, 0.01),
    epochS: numFlag('--epoch-s', f.epochS, 0.01),
    fetchS: numFlag('--fetch-s', f.fetchS, 0),
    latencyMs: numFlag('--latency-ms', f.latencyMs, 0),
    loss: numFlag('--loss', f.loss, 0),
    hysteresis: numFlag('--hysteresis', f.hysteresis, 0),
    cooldownS: numFlag('--cooldown-s', f.cooldownS, 0),
    killAtH: f.killAtH === 'none' ? null : numFlag('--kill-at-h', f.killAtH, 0)
  }
  if (f.start !== 'join' && f.start !== 'random') throw new ConfigError('--start must be join or random')
  o.start = f.start
  if (o.loss! >= 1) throw new ConfigError('--loss must be below 1')
  if (o.noise! >= 1) throw new ConfigError('--noise must be below 1')
  if (f.maxMoves != null) o.maxMovesPerEpoch = intFlag('--max-moves', f.maxMoves, 1)
  if (f.stageCosts != null) {
    const costs = f.stageCosts.split(',').map(Number)
    if (costs.length !== stages || costs.some(c => !(Number.isFinite(c) && c > 0))) throw new ConfigError(`--stage-costs must be ${stages} positive numbers, comma-separated`)
    o.stageCosts = costs
  }
  return o
}

export function register (program: Command): void {
  const d = DEFAULT_SIM
  program.command('simulate')
    .description('simulate the scheduler (the real assignment rule) over a swarm with gossip latency, loss and churn')
    .option('--nodes <n>', 'population of the swarm', String(d.nodes))
    .option('--stages <n>', 'pipeline stages', String(d.stages))
    .option('--seed <n>', 'seed of every random draw (equal seeds, equal reports)', String(d.seed))
    .option('--hours <h>', 'simulated time', String(d.hours))
    .option('--ramp-s <s>', 'the initial population arrives over this many seconds', String(d.rampS))
    .option('--lifetime-h <h>', 'mean node lifetime, exponential (Poisson churn); 0: no churn', String(d.lifetimeH))
    .option('--capacity-sigma <x>', 'sigma of the log-normal node capacities', String(d.capacitySigma))
    .option('--noise <x>', '+- fraction of noise on reported throughput', String(d.noise))
    .option('--heartbeat-s <s>', 'heartbeat period', String(d.heartbeatS))
    .option('--ttl-s <s>', 'view entry lifetime', String(d.ttlS))
    .option('--epoch-s <s>', 'rebalancing period', String(d.epochS))
    .option('--fetch-s <s>', 'time to fetch a stage\'s state before serving it', String(d.fetchS))
    .option('--latency-ms <ms>', 'median one-way gossip latency (log-normal)', String(d.latencyMs))
    .option('--loss <p>', 'probability a heartbeat misses a node', String(d.loss))
    .option('--hysteresis <x>', 'gain a rebalancing plan must bring', String(d.hysteresis))
    .option('--cooldown-s <s>', 'no second move within this time', String(d.cooldownS))
    .option('--max-moves <n>', 'most moves per epoch (default: nodes / (4 x stages))')
    .option('--stage-costs <list>', 'relative work per stage, comma-separated')
    .option('--kill-at-h <h>', 'kill every node of one stage at this hour ("none": never)', String(d.killAtH))
    .option('--start <how>', 'join: the first nodes join through the rule; random: they start on random stages', d.start)
    .option('--json', 'print one JSON object')
    .action((flags: SimulateFlags) => {
      const report = simulateReport(simulateOptions(flags))
      if (flags.json === true) {
        process.stdout.write(JSON.stringify(report) + '\n')
      } else {
        process.stdout.write(formatTable(report) + '\n')
      }
    })
}
