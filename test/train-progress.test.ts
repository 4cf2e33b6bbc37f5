// Progress output: a redrawn bar on a TTY, plain lines at a fixed cadence otherwise.
import assert from 'node:assert/strict'
import { formatDuration, ProgressReporter } from '../core/train/progress.ts'

function sink (isTTY: boolean): { out: string[], stream: { isTTY: boolean, columns: number, write: (s: string) => boolean } } {
  const out: string[] = []
  return { out, stream: { isTTY, columns: 200, write: (s: string) => { out.push(s); return true } } }
}

const update = (step: number) => ({ step, totalSteps: 10, loss: 2.5, tokensPerSecond: 12345, etaSeconds: 75, lr: 1e-3 })

describe('train: progress', function () {
  it('plain lines on the first step, every n steps and the last, when not a TTY', () => {
    const { out, stream } = sink(false)
    const p = new ProgressReporter(stream, 4)
    for (let s = 1; s <= 10; s++) p.update(update(s))
    assert.deepEqual(out.map(l => l.split(' ')[1]), ['1/10', '4/10', '8/10', '10/10'])
    assert.equal(out[0], 'step 1/10 | loss 2.5000 | 12.3k tok/s | lr 1.00e-3 | ETA 1m15s\n')
    p.note('eval 1.5')
    assert.equal(out.at(-1), 'eval 1.5\n')
  })

  it('redraws one line with a bar on a TTY, and notes keep their own line', () => {
    const { out, stream } = sink(true)
    const p = new ProgressReporter(stream, 4)
    p.update(update(5))
    assert.match(out[0], /^\r\x1b\[2K\[={12}> {11}\] step 5\/10 \| loss 2\.5000/)
    p.note('checkpoint')
    assert.deepEqual(out.slice(1), ['\r\x1b[2K', 'checkpoint\n'])
    p.update(update(10))
    p.done()
    assert.equal(out.at(-1), '\n')
    assert.match(out.at(-2) as string, /\[={24}\] step 10\/10/)
  })

  it('formats durations', () => {
    assert.equal(formatDuration(5), '5s')
    assert.equal(formatDuration(65), '1m05s')
    assert.equal(formatDuration(3 * 3600 + 7 * 60), '3h07m')
    assert.equal(formatDuration(NaN), '?')
  })
})
