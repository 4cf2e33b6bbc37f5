// The demo's file writers on real files: the loss-chart SVG (well-formed, points where the data
// says, labels escaped) and the full-model checkpoint assembled from stage checkpoints (every
// tensor carried over, loadable by `layerswarm sample`, computing what the split model computes).
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { lossChartSvg, niceTicks } from '../core/demo/loss-chart-svg.ts'
import { mergeStageCheckpoints } from '../core/train/merge-checkpoints.ts'
import { validateModelConfig, type ModelConfig } from '../core/model/config.ts'
import { GptModel } from '../core/model/gpt.ts'
import { initialValues, stageParamSpecs } from '../core/model/params.ts'
import { stageLayouts } from '../core/model/stage-split.ts'
import { CheckpointMismatchError, checkpointSpecs, loadCheckpoint, saveCheckpoint } from '../core/train/checkpoint.ts'
import { withBackend } from '../cli/flags.ts'
import { silentLogger } from '../core/logger.ts'
import { runCli } from './cli-helpers.ts'
import { removeDirs, tempDir } from './node-helpers.ts'

/** Tag names in document order; throws on a close tag that does not match, returns leftovers. */
function unbalancedTags (svg: string): string[] {
  const stack: string[] = []
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    if (m[3] === '/') continue
    if (m[1] === '/') {
      const open = stack.pop()
      if (open !== m[2]) throw new Error(`</${m[2]}> closes <${open}>`)
    } else {
      stack.push(m[2])
    }
  }
  return stack
}

function polylinePoints (svg: string): Array<[number, number]> {
  const m = /<polyline[^>]*points="([^"]*)"/.exec(svg)
  assert.ok(m != null, 'a polyline')
  return m[1].split(' ').map(p => p.split(',').map(Number) as [number, number])
}

describe('demo: loss chart SVG', () => {
  const dirs: string[] = []
  after(async () => { await removeDirs(dirs) })

  it('draws a falling loss as a polyline going down the plot, with axes, ticks, labels and a reference line', async () => {
    const curve: Array<[number, number]> = Array.from({ length: 40 }, (_, i) => [i + 1, 5.5 - 3 * (1 - Math.exp(-i / 10))])
    curve.push([41, NaN]) // skipped, not drawn at a bogus place
    const svg = lossChartSvg([
      { name: 'train', points: curve },
      { name: 'eval', points: [[40, 2.7]], style: 'markers' }
    ], { title: 'loss <run & "one">', xLabel: 'optimizer step', yLabel: 'loss (nats/token)', width: 640, height: 400, references: [{ label: 'unigram 3.03', y: 3.03 }] })
    const dir = await tempDir('lsw-demo-svg-')
    dirs.push(dir)
    await writeFile(join(dir, 'loss.svg'), svg)
    const text = await readFile(join(dir, 'loss.svg'), 'utf8')

    assert.match(text, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="640" height="400"/)
    assert.deepEqual(unbalancedTags(text), [])
    assert.ok(text.includes('loss &lt;run &amp; &quot;one&quot;&gt;'), 'title escaped')
    assert.ok(!/<run|& "/.test(text), 'no raw markup from labels')
    assert.ok(text.includes('>optimizer step</text>') && text.includes('>loss (nats/token)</text>'))

    const pts = polylinePoints(text)
    assert.equal(pts.length, 40, 'one vertex per finite point')
    for (let i = 1; i < pts.length; i++) assert.ok(pts[i][0] > pts[i - 1][0], 'x grows with the step')
    assert.ok(pts[39][1] > pts[0][1] + 150, 'a falling loss goes down the picture (SVG y grows downwards)')
    for (const [x, y] of pts) assert.ok(x >= 64 && x <= 620 && y >= 40 && y <= 348, `(${x},${y}) inside the plot area`)

    // y ticks at 1-2-5 steps covering the data and the reference, labelled
    const yTicks = [...text.matchAll(/text-anchor="end" dominant-baseline="middle">([^<]+)</g)].map(m => Number(m[1]))
    assert.deepEqual(yTicks, [2.5, 3, 3.5, 4, 4.5, 5, 5.5], "min loss 2.56, max 5.5")
    // the reference line sits at its value on the same scale as the ticks
    const tickY = (label: string): number => Number(new RegExp(`y="([\\d.]+)" text-anchor="end" dominant-baseline="middle">${label.replace('.', '\\.')}<`).exec(text)?.[1])
    const refY = Number(/class="reference" x1="\d+" y1="([\d.]+)"/.exec(text)?.[1])
    const expected = tickY('3.0') + (tickY('3.5') - tickY('3.0')) * (3.03 - 3) / 0.5
    assert.ok(Math.abs(refY - expected) < 0.2, `reference at ${refY}, expected ${expected}`)
    assert.equal([...text.matchAll(/<circle /g)].length, 2, 'one eval marker + its legend swatch')
  })

  it('draws an empty chart with a "no data" note', () => {
    const svg = lossChartSvg([{ name: 'train', points: [] }], { title: 't', xLabel: 'x', yLabel: 'y' })
    assert.deepEqual(unbalancedTags(svg), [])
    assert.match(svg, />no data</)
    assert.doesNotMatch(svg, /<polyline/)
  })

  it('picks 1-2-5 ticks that cover the range, and widens a flat one', () => {
    assert.deepEqual(niceTicks(0.13, 5.6, 6), { min: 0, max: 6, step: 1, ticks: [0, 1, 2, 3, 4, 5, 6] })
    assert.deepEqual(niceTicks(1, 150, 6).ticks, [0, 50, 100, 150])
    const flat = niceTicks(2, 2, 6)
    assert.ok(flat.min < 2 && flat.max > 2)
  })
})

describe('demo: full model from stage checkpoints', function () {
  this.timeout(120_000)
  const dirs: string[] = []
  after(async () => { await removeDirs(dirs) })
  const CFG: ModelConfig = validateModelConfig({ vocabSize: 256, blockSize: 16, nLayer: 3, nHead: 2, dModel: 16 })
  const SEED = 7

  /** Writes stage i's parameters (the seeded init) as a stage checkpoint with optimizer state, as a node would. */
  async function writeStages (dir: string, config: ModelConfig, S: number, k: number): Promise<string[]> {
    const files: string[] = []
    for (const layout of stageLayouts(config, S, k)) {
      const specs = stageParamSpecs(layout)
      const i = layout.range.index
      const params = new Map(specs.map(s => [s.name, initialValues(s, SEED)]))
      const zeros = new Map(specs.map(s => [s.name, new Float32Array(s.shape.reduce((a, b) => a * b, 1))]))
      const file = join(dir, `stage-${i}-step-000010.safetensors`)
      await saveCheckpoint(file, { config, layout: { stages: S, bottleneck: k, stage: i }, params, optimizer: { step: 10, m: zeros, v: zeros }, train: { step: 10 }, info: { tokenizer: 'byte', stage: i } })
      files.push(file)
    }
    return files
  }

  it('merges 3 stage files (any order) into a whole-model file that loads, samples, and computes the split model\'s loss', async () => {
    const dir = await tempDir('lsw-demo-merge-')
    dirs.push(dir)
    const files = await writeStages(dir, CFG, 3, 0)
    const out = join(dir, 'model.safetensors')
    const merged = await mergeStageCheckpoints([files[2], files[0], files[1]], out, { source: 'test' })
    assert.equal(merged.params, 2 * 256 * 16 + 16 * 16 + 3 * (12 * 16 * 16 + 13 * 16) + 2 * 16)

    const ck = await loadCheckpoint(out, { optimizer: false })
    assert.deepEqual(ck.layout, { stages: 3, bottleneck: 0, stage: null })
    assert.deepEqual(ck.config, CFG)
    assert.deepEqual(ck.info, { tokenizer: 'byte', stage: 0, source: 'test' })
    const names = checkpointSpecs(CFG, ck.layout).map(s => s.name)
    assert.deepEqual([...ck.params.keys()], names, 'every parameter, in model order')
    assert.ok(names.includes('wte.weight') && names.includes('h.2.mlp.c_proj.weight') && names.includes('lm_head.weight'))
    for (const f of files) {
      const st = await loadCheckpoint(f)
      for (const [name, data] of st.params) assert.deepEqual(ck.params.get(name), data, name)
    }

    // the merged parameters compute exactly what the seeded 3-stage model computes
    const tokens = Int32Array.from({ length: 2 * 16 }, (_, i) => (i * 37 + 11) % 256)
    const targets = Int32Array.from({ length: 2 * 16 }, (_, i) => (i * 53 + 5) % 256)
    const [a, b] = await withBackend('cpu', 1, silentLogger, async backend => {
      const fromFile = new GptModel(backend, ck.config, { stages: 3, params: ck.params })
      const seeded = new GptModel(backend, CFG, { stages: 3, seed: SEED })
      try {
        return [await fromFile.forward(tokens, 2, 16, targets), await seeded.forward(tokens, 2, 16, targets)]
      } finally {
        fromFile.dispose()
        seeded.dispose()
      }
    })
    assert.equal(a, b)

    // and `layerswarm sample` takes it as a checkpoint (it refuses a single stage's file)
    const r = await runCli(['sample', '--checkpoint', out, '--tokens', '8', '--temperature', '0', '--prompt', 'In the'], { timeoutMs: 60_000 })
    assert.equal(r.code, 0, r.stderr)
    assert.ok(r.stdout.startsWith('In the') && r.stdout.length > 'In the'.length, r.stdout)
    const one = await runCli(['sample', '--checkpoint', files[1], '--tokens', '2'], { timeoutMs: 60_000 })
    assert.notEqual(one.code, 0)
    assert.match(one.stderr, /holds stage 1 only/)
  })

  it('keeps a bottleneck split: the merged file records it and loads', async () => {
    const dir = await tempDir('lsw-demo-merge-')
    dirs.push(dir)
    const files = await writeStages(dir, CFG, 2, 4)
    const out = join(dir, 'model.safetensors')
    await mergeStageCheckpoints(files, out)
    const ck = await loadCheckpoint(out, { optimizer: false })
    assert.deepEqual(ck.layout, { stages: 2, bottleneck: 4, stage: null })
    assert.ok(ck.params.has('h.1.bottleneck_down.weight') && ck.params.has('h.2.bottleneck_up.weight'), [...ck.params.keys()].join(' '))
  })

  it('refuses a missing stage, a stage given twice, another model, another split, and a whole-model file', async () => {
    const dir = await tempDir('lsw-demo-merge-')
    dirs.push(dir)
    const three = await writeStages(dir, CFG, 3, 0)
    const out = join(dir, 'bad.safetensors')
    await assert.rejects(mergeStageCheckpoints([three[0], three[2]], out), (e: Error) => e instanceof CheckpointMismatchError && /stage\(s\) 1 of 3 missing/.test(e.message))
    await assert.rejects(mergeStageCheckpoints([three[0], three[1], three[1], three[2]], out), /stage 1 is in both/)

    const otherDir = await tempDir('lsw-demo-merge-')
    dirs.push(otherDir)
    const other = await writeStages(otherDir, validateModelConfig({ ...CFG, dModel: 8 }), 3, 0)
    await assert.rejects(mergeStageCheckpoints([three[0], other[1], three[2]], out), /holds another model/)

    const twoDir = await tempDir('lsw-demo-merge-')
    dirs.push(twoDir)
    const two = await writeStages(twoDir, CFG, 2, 0)
    await assert.rejects(mergeStageCheckpoints([three[0], two[1]], out), /comes from a 2-stage split/)

    const whole = join(dir, 'whole.safetensors')
    await mergeStageCheckpoints(three, whole)
    await assert.rejects(mergeStageCheckpoints([whole], out), /already holds every stage/)
    await assert.rejects(loadCheckpoint(out, { optimizer: false }), /cannot read checkpoint/, 'nothing written on refusal')
  })
})
