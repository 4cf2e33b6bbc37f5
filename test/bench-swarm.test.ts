// `layerswarm bench swarm` end to end with a tiny step count: train --local and a real swarm of
// stage processes, then the report's shape (no timing assertions: figures are the bench's job).
import '../core/polyfills.ts'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import { join } from 'node:path'
import { benchSwarm, swarmBenchSettings } from '../bench/swarm.ts'
import { defaultCorpusPath, prepareDataset } from '../core/data/index.ts'
import { PROFILE_CATEGORIES } from '../core/pipeline/pipeline-profile.ts'
import { ConfigError } from '../core/errors.ts'

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe('bench swarm', function () {
  this.timeout(300_000)

  it('refuses bad settings with a ConfigError before starting anything', () => {
    const refused = (o: Parameters<typeof swarmBenchSettings>[0], re: RegExp): void => {
      assert.throws(() => swarmBenchSettings(o), (e: Error) => e instanceof ConfigError && re.test(e.message))
    }
    refused({ stages: 1 }, /--stages/)
    refused({ stages: 9 }, /--stages/)
    refused({ model: 'nope' }, /--model/)
    refused({ microbatches: 0 }, /--microbatches/)
    refused({ lr: Number.NaN }, /--lr/)
    refused({ lr: 0 }, /--lr/)
    refused({ data: '/nonexistent/layerswarm-data' }, /--data .*no such file/)
    refused({ data: ' ' }, /--data/)
    refused({ seqLen: 0 }, /--seq-len/)
    refused({ seqLen: 65 }, /--seq-len/) // tiny's context is 64
    refused({ seqLen: 1.5 }, /--seq-len/)
    refused({ gradClip: -1 }, /--grad-clip/)
    refused({ gradClip: Number.NaN }, /--grad-clip/)
    assert.equal(swarmBenchSettings({ gradClip: 0 }).gradClip, 0)
    const d = swarmBenchSettings({})
    assert.equal(d.data, undefined) // the defaults stay the shipped corpus at the model's context
    assert.equal(d.seqLen, undefined)
    const s = swarmBenchSettings({ codec: 'none' })
    assert.equal(s.bottleneck, null)
    assert.equal(s.maxInflight, s.microbatches)
  })

  it('reports tokens/s and held-out loss of both runs, the per-stage profile, and leaves no process behind', async () => {
    const report = await benchSwarm({ steps: 2, microbatches: 2, evalBatches: 2 })
    assert.equal(report.suite, 'swarm')
    assert.equal(typeof report.machine.loadAvgEnd, 'number')
    for (const name of ['tokens_per_s', 'eval_loss']) {
      const r = report.results.find(x => x.name === name)
      assert.ok(r != null, name)
      assert.ok(r.value > 0, name)
      assert.equal(r.baseline?.name, 'train --local')
      assert.equal(r.ratio, r.value / (r.baseline as { value: number }).value)
    }
    assert.deepEqual(report.profile.map(p => p.stage), [0, 1])
    for (const st of report.profile) {
      const p = st.profile
      assert.ok(p != null, `stage ${st.stage} profile`)
      assert.equal(p.microbatches, 4)
      for (const c of PROFILE_CATEGORIES) {
        assert.ok(typeof p.seconds[c] === 'number' && p.seconds[c] >= 0, `${c} seconds`)
        assert.ok(typeof p.perMicrobatchMs[c] === 'number' && p.perMicrobatchMs[c] >= 0, `${c} ms`)
      }
      assert.ok(p.perMicrobatchMs.compute > 0)
    }
    for (const r of report.results.filter(x => x.name.startsWith('stage '))) {
      assert.ok(r.value >= 0, r.name)
      assert.equal(r.ratio, null)
    }
    const pids = report.swarm.pids as number[]
    assert.equal(pids.length, 4) // bootstrap, two stages, train --local
    for (const pid of pids) assert.equal(alive(pid), false, `pid ${pid}`)
  })

  it('trains both runs on a prepared shard folder at --seq-len and evaluates the swarm on its held-out split', async () => {
    const dir = await mkdtemp(join(os.tmpdir(), 'lsw-bsw-test-'))
    try {
      const prepared = await prepareDataset({ input: defaultCorpusPath(), out: join(dir, 'data'), tokenizer: 'byte' })
      const T = 16
      const report = await benchSwarm({ data: prepared.dir, seqLen: T, steps: 1, microbatches: 2, evalBatches: 2 })
      assert.equal(report.settings.data, prepared.dir)
      assert.equal(report.settings.seqLen, T)
      const get = (name: string): { value: number, baseline: { value: number } | null } => {
        const r = report.results.find(x => x.name === name)
        assert.ok(r != null, name)
        return r
      }
      // every microbatch of B x T tokens came back in the swarm, as train --local trained them
      assert.equal(get('tokens').value, 1 * 2 * 8 * T)
      assert.equal(get('tokens').baseline?.value, 1 * 2 * 8 * T)
      const unigram = prepared.manifest.info?.unigramEvalLoss
      assert.equal(typeof unigram, 'number')
      assert.equal(get('unigram_loss').value, Math.round((unigram as number) * 1e4) / 1e4)
      assert.equal(get('unigram_loss').baseline, null)
      const ev = get('eval_loss')
      assert.ok(Number.isFinite(ev.value) && ev.value > 0)
      for (const pid of report.swarm.pids as number[]) assert.equal(alive(pid), false, `pid ${pid}`)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
