// The demo's view of a swarm: node statuses folded into one snapshot (what is counted where), the
// live display in both modes, and the stage assignment of the demo's nodes.
import assert from 'node:assert/strict'
import { PassThrough } from 'node:stream'
import { LiveDisplay } from '../core/demo/live-display.ts'
import { nodeNames, stageAssignment } from '../core/demo/swarm-plan.ts'
import { parseTrainingStatus, snapshot, type NodeView } from '../core/demo/swarm-view.ts'
import { averagingLine, type DemoAveraging } from '../core/demo/demo-report.ts'

function training (o: Record<string, unknown>): Record<string, unknown> {
  return {
    runId: 'r1', stages: 3, state: 'training', steps: 100, microbatchesStarted: 0, microbatchesDone: 0, microbatchesDropped: 0,
    microbatchesRetried: 0, lossLast: null, loss: [], evalLoss: null, tokens: 0, bytesForward: 0, bytesBackward: 0, peersPerStage: {}, throughput: null, ...o
  }
}

function view (name: string, stage: number | null, status: unknown, alive = true): NodeView {
  return { name, stage, pid: 1, peerId: 'p', dataDir: '/x', alive, training: parseTrainingStatus(status) }
}

describe('demo: swarm view and display', () => {
  it('assigns extra nodes from stage 1 on and names doubled stages a, b', () => {
    assert.deepEqual(stageAssignment(4, 3), [0, 1, 2, 1])
    assert.deepEqual(stageAssignment(3, 2), [0, 1, 1])
    assert.deepEqual(stageAssignment(7, 3), [0, 1, 2, 1, 2, 1, 2])
    assert.deepEqual(nodeNames([0, 1, 2, 1]), ['s0', 's1a', 's2', 's1b'])
  })

  it('the averaging line: rounds per stage, a doubled stage that never met, or no doubled stage', () => {
    const stage = (st: number, nodes: number, rounds: number, alone: number): DemoAveraging['per_stage'][number] =>
      ({ stage: st, nodes, rounds, alone, failed: 0, divergence_before: rounds > 0 ? 0.5 : null, divergence_after: rounds > 0 ? 0 : null, identical_after: rounds > 0 ? true : null })
    assert.equal(averagingLine({ period: 10, rounds: 1, per_stage: [stage(0, 1, 0, 15), stage(1, 2, 1, 0)] }),
      'averaging every 10 steps: 1 round; stage 1: distance to the mean 0.500 -> 0.00 (identical)')
    assert.equal(averagingLine({ period: 10, rounds: 0, per_stage: [stage(0, 1, 0, 15), stage(1, 2, 0, 15)] }),
      'averaging every 10 steps: 0 rounds; stage 1: 2 nodes never found each other (15 rounds alone)')
    assert.equal(averagingLine({ period: 10, rounds: 0, per_stage: [stage(0, 1, 0, 15), stage(1, 1, 0, 15)] }),
      'averaging every 10 steps: 0 rounds (no stage has two nodes)')
  })

  it('reads a training status defensively: bad fields become defaults, bad loss points are dropped', () => {
    const t = parseTrainingStatus({ training: { stage: 1, stages: 2, state: 'training', step: 'x', loss: [[1, 5.5], [2, 'NaN'], [3], null, [4, 4.9]], lossLast: Infinity, peersPerStage: { 0: 1, 1: 'two' } } })
    assert.ok(t != null)
    assert.equal(t.step, 0)
    assert.deepEqual(t.loss, [[1, 5.5], [4, 4.9]])
    assert.equal(t.lossLast, null)
    assert.deepEqual(t.peersPerStage, { 0: 1 })
    assert.equal(parseTrainingStatus({ peerId: 'p' }), undefined, 'a node without the runtime')
    assert.equal(parseTrainingStatus(null), undefined)
  })

  it('counts microbatches at stage 0, bytes everywhere, the loss from stage 0, and keeps a dead node\'s work', () => {
    const views = [
      view('boot', null, { peers: [] }),
      view('s0', 0, { training: training({ stage: 0, step: 7, microbatchesDone: 30, microbatchesDropped: 2, microbatchesRetried: 1, tokens: 3840, bytesForward: 1000, loss: [[6, 3.0], [7, 2.8]], lossLast: 2.8, evalLoss: 2.9, peersPerStage: { 0: 1, 1: 1, 2: 1 } }) }),
      view('s1a', 1, { training: training({ stage: 1, step: 6, microbatchesDone: 14, microbatchesRetried: 2, bytesForward: 500, bytesBackward: 400, loss: [[6, 3.1]] }) }),
      view('s1b', 1, { training: training({ stage: 1, step: 3, microbatchesDone: 9, bytesForward: 300, bytesBackward: 200 }) }, false),
      view('s2', 2, { training: training({ stage: 2, step: 7, microbatchesDone: 23, tokens: 2944, bytesBackward: 900, loss: [[6, 3.2], [7, 2.7]], evalLoss: 3.0, peersPerStage: { 0: 1, 1: 2, 2: 1 } }) })
    ]
    const s = snapshot(views, 3, 100, 12)
    assert.equal(s.step, 7)
    assert.equal(s.steps, 100)
    assert.deepEqual(s.nodesPerStage, [1, 1, 1], 's1b is dead')
    assert.deepEqual(s.peersPerStage, [1, 2, 1], 'the largest count any live node reports')
    assert.equal(s.microbatchesDone, 30)
    assert.equal(s.microbatchesDropped, 2)
    assert.equal(s.microbatchesRetried, 3)
    assert.equal(s.tokens, 3840)
    assert.equal(s.bytesForward, 1800, 'the dead node\'s bytes still count')
    assert.equal(s.bytesBackward, 1500)
    assert.deepEqual(s.lossCurve, [[6, 3.0], [7, 2.8]])
    assert.equal(s.lossLast, 2.8)
    assert.equal(s.evalLoss, 3.0, 'the last stage\'s eval')
    assert.deepEqual(s.states, ['training', 'training', 'exited', 'training'])
  })

  it('prints plain lines every intervalS without a TTY, and redraws a panel in place on a TTY', () => {
    const base = snapshot([view('s0', 0, { training: training({ stage: 0, step: 0, stages: 2, steps: 50 }) }), view('s1', 1, {})], 2, 50, 0)
    const at = (t: number, step: number, mb: number): typeof base => ({ ...base, elapsedS: t, step, microbatchesDone: mb, tokens: mb * 100, lossLast: 5 - step / 10, lossCurve: [[1, 5.5], [step, 5 - step / 10]] })

    const plain = new PassThrough()
    let text = ''
    plain.on('data', (d: Buffer) => { text += d.toString() })
    const p = new LiveDisplay(plain, { tty: false, intervalS: 5, title: 'demo' })
    p.update(at(0, 0, 0))
    p.update(at(2, 2, 8)) // within 5 s of the last line: not printed
    p.note('node s1 exited: code 0')
    p.update(at(10, 10, 40))
    p.update(at(12, 12, 48)) // not printed now, but done() prints the final state once
    p.done()
    const lines = text.trim().split('\n')
    assert.equal(lines.length, 4)
    assert.match(lines[3], /^\[12s\] step 12\/50 /)
    assert.match(lines[0], /^\[0s\] step 0\/50 loss 5\.000 /)
    assert.equal(lines[1], '[2s] node s1 exited: code 0')
    assert.match(lines[2], /^\[10s\] step 10\/50 loss 4\.000 eval -- mb\/s 4\.0 dropped 0 sent 0 B nodes\/stage 1\/1 eta 40s$/)
    assert.doesNotMatch(text, /\x1b/, 'no escape codes in a log')

    const tty = new PassThrough()
    let screen = ''
    tty.on('data', (d: Buffer) => { screen += d.toString() })
    const t = new LiveDisplay(tty, { tty: true, title: 'demo' })
    t.update(at(0, 0, 0))
    const panel = t.panel(at(0, 0, 0))
    assert.equal(screen, panel.join('\n') + '\n', 'first panel drawn as is')
    t.update(at(4, 4, 16))
    assert.ok(screen.includes(`\x1b[${panel.length}F\x1b[J`), 'the second draw moves up over the first and clears it')
    assert.match(screen, /step  4\/50 \[##\.+\] 8%/)
    assert.match(screen, /work  16 microbatches, 4\.0\/s, 0 dropped/)
    assert.match(screen, /stage 1  1 node/)
    t.done()
    const before = screen
    t.note('training done')
    assert.equal(screen, before + 'training done\n', 'after done() the panel stays as it is and notes go below it')
  })
})
