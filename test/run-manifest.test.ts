// Run manifest: canonical JSON, run id, validation with field paths, defaults and file loading.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError } from '../core/errors.ts'
import {
  CanonicalJsonError, ManifestFileError, ManifestValidationError, canonicalJson, defaultManifest, loadManifest,
  parseManifest, runId, validateManifest
} from '../core/run/index.ts'
import type { RunManifest } from '../core/run/index.ts'

/** Same object with keys inserted in reverse order at every level. */
function reverseKeys (v: unknown): unknown {
  if (Array.isArray(v)) return v.map(reverseKeys)
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).reverse().map(([k, x]) => [k, reverseKeys(x)]))
  return v
}

function issuesOf (fn: () => unknown): string[] {
  try {
    fn()
  } catch (err) {
    assert.ok(err instanceof ManifestValidationError, String(err))
    assert.ok(err instanceof ConfigError)
    assert.equal(err.code, 'ERR_CONFIG')
    return err.issues.map(i => i.path).sort()
  }
  assert.fail('expected a ManifestValidationError')
}

describe('run: canonical JSON', () => {
  it('sorts keys by code unit at every level, with no whitespace', () => {
    assert.equal(canonicalJson({ b: 1, a: [3, { z: true, y: null }], 'é': 's', B: -0, '\u0000': 1.5e-7 }),
      '{"\\u0000":1.5e-7,"B":0,"a":[3,{"y":null,"z":true}],"b":1,"é":"s"}')
    const v = { x: [1, 'two', { c: 3, a: [] }], n: 1e21, s: 'q"\n' }
    assert.deepEqual(JSON.parse(canonicalJson(v)), v)
    assert.equal(canonicalJson(reverseKeys(v)), canonicalJson(v))
  })

  it('refuses values JSON would drop or mangle, naming the path', () => {
    const cyc: Record<string, unknown> = {}
    cyc.self = cyc
    const cases: Array<[unknown, string]> = [
      [{ a: NaN }, 'a'], [{ a: { b: Infinity } }, 'a.b'], [{ a: undefined }, 'a'], [[1, -Infinity], '[1]'],
      [{ a: 1n }, 'a'], [{ f: () => 1 }, 'f'], [{ d: new Date(0) }, 'd'], [{ m: new Map() }, 'm'], [cyc, 'self'],
      // eslint-disable-next-line no-sparse-arrays
      [{ h: [1, , 3] }, 'h[1]'], [Symbol('s'), '']
    ]
    for (const [value, path] of cases) {
      assert.throws(() => canonicalJson(value), (e: unknown) => e instanceof CanonicalJsonError && e.path === path, path)
    }
  })
})

describe('run: manifest', () => {
  it('the default manifest is valid, frozen, and its run id is sha256(canonical JSON)[0..16] in hex', () => {
    const m = defaultManifest()
    assert.ok(Object.isFrozen(m) && Object.isFrozen(m.optimizer) && Object.isFrozen(m.model))
    const id = runId(m)
    assert.match(id, /^[0-9a-f]{32}$/)
    assert.equal(id, createHash('sha256').update(canonicalJson(m)).digest('hex').slice(0, 32))
    assert.equal(runId(defaultManifest()), id)
    assert.equal(runId(validateManifest(reverseKeys(m))), id, 'key order does not change the run id')
  })

  it('any change of any field changes the run id', () => {
    const base = defaultManifest()
    const ids = new Set([runId(base)])
    const variants: Array<Parameters<typeof defaultManifest>[0]> = [
      { name: 'other' }, { stages: { count: 4 } }, { stages: { split: [3, 1] } }, { data: { seed: 2 } },
      { data: { corpus: 'x' } }, { data: { tokenizer: 'gpt2' } }, { data: { batchSize: 9 } }, { data: { seqLen: 32 } },
      { optimizer: { lr: 3.0001e-4 } }, { optimizer: { warmup: 0 } }, { optimizer: { steps: 10_001 } },
      { optimizer: { weightDecay: 0 } }, { optimizer: { clip: 0 } }, { optimizer: { beta2: 0.999 } }, { optimizer: { eps: 1e-6 } },
      { codecs: { activation: 'int8' } }, { codecs: { 'parameter-grad': 'topk' } }, { averaging: { period: 51 } },
      { averaging: { mode: 'params' } }, { bottleneck: 16 }, { model: { vocabSize: 257, blockSize: 64, nLayer: 4, nHead: 4, dModel: 256 } }
    ]
    for (const v of variants) ids.add(runId(defaultManifest(v)))
    assert.equal(ids.size, variants.length + 1)
  })

  it('overrides merge field by field, except model, which replaces whole', () => {
    const m = defaultManifest({ optimizer: { lr: 0.01 }, model: { nLayer: 6, dModel: 64 }, stages: { count: 3, split: [2, 2, 2] } })
    assert.equal(m.optimizer.lr, 0.01)
    assert.equal(m.optimizer.steps, defaultManifest().optimizer.steps)
    assert.deepEqual(m.model, { nLayer: 6, dModel: 64 })
    assert.deepEqual(m.stages, { count: 3, split: [2, 2, 2] })
  })

  it('reports every bad field with its path', () => {
    const good = defaultManifest() as unknown as Record<string, any>
    const bad = structuredClone(good)
    bad.optimizer.lr = -1
    bad.optimizer.lrr = 1
    bad.optimizer.warmup = 20_000
    bad.stages.split = [3, 3]
    bad.codecs.activation = 'FP16!'
    delete bad.codecs['parameter-grad']
    bad.averaging.mode = 'sometimes'
    bad.bottleneck = 128
    bad.data.seqLen = 65
    bad.data.seed = 1.5
    bad.extra = true
    assert.deepEqual(issuesOf(() => validateManifest(bad)), [
      'averaging.mode', 'bottleneck', 'codecs.activation', 'codecs.parameter-grad', 'data.seed', 'data.seqLen', 'extra',
      'optimizer.lr', 'optimizer.lrr', 'optimizer.warmup', 'stages.split'
    ].sort())
    assert.deepEqual(issuesOf(() => validateManifest({ ...good, model: { nLayer: NaN } })), ['model.nLayer'])
    assert.deepEqual(issuesOf(() => validateManifest({ ...good, stages: { count: 5, split: null } })), ['stages.count'])
    assert.deepEqual(issuesOf(() => validateManifest({ ...good, version: 2 })), ['version'])
    assert.deepEqual(issuesOf(() => validateManifest([])), [''])
    assert.deepEqual(issuesOf(() => validateManifest({ ...good, model: {} })), ['model'])
  })

  it('runs a model validator when given one', () => {
    const validateModel = (m: unknown): void => {
      if ((m as { nHead: number }).nHead !== 4) throw new Error('nHead must divide dModel')
    }
    assert.doesNotThrow(() => defaultManifest({}, { validateModel }))
    assert.deepEqual(issuesOf(() => defaultManifest({ model: { nHead: 3, nLayer: 4 } }, { validateModel })), ['model'])
  })

  it('loads from a JSON file, whatever its formatting; bad files give typed errors', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'layerswarm-manifest-'))
    try {
      const m: RunManifest = defaultManifest({ name: 'file-run', bottleneck: 8 })
      const pretty = join(dir, 'pretty.json')
      await writeFile(pretty, JSON.stringify(reverseKeys(m), null, 2))
      const loaded = await loadManifest(pretty)
      assert.equal(runId(loaded), runId(m))
      assert.deepEqual(loaded, m)

      await assert.rejects(loadManifest(join(dir, 'missing.json')), (e: unknown) => e instanceof ManifestFileError && /ENOENT/.test(e.message))
      const broken = join(dir, 'broken.json')
      await writeFile(broken, '{"version": 1,')
      await assert.rejects(loadManifest(broken), ManifestFileError)
      const invalid = join(dir, 'invalid.json')
      await writeFile(invalid, JSON.stringify({ ...m, optimizer: { ...m.optimizer, lr: 'fast' } }))
      await assert.rejects(loadManifest(invalid), (e: unknown) => e instanceof ManifestValidationError && e.message.includes(invalid) && e.issues[0].path === 'optimizer.lr')
      assert.throws(() => parseManifest('nope'), ManifestFileError)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
