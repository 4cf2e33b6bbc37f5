// safetensors encoding/decoding and checkpoint files: round trips, atomic writes, and typed
// errors for truncated, corrupted or mismatched files.
import assert from 'node:assert/strict'
import { mkdtemp, readdir, readFile, rm, truncate, writeFile, copyFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { validateModelConfig } from '../core/model/config.ts'
import { initialValues, stageParamSpecs } from '../core/model/params.ts'
import { wholeModelLayout } from '../core/model/stage-split.ts'
import {
  CheckpointCorruptError, CheckpointMismatchError, latestCheckpoint, loadCheckpoint, optimizerPathFor, saveCheckpoint,
  checkpointFileName, type Checkpoint
} from '../core/train/checkpoint.ts'
import { decodeSafetensors, encodeSafetensors, SafetensorsError } from '../core/train/safetensors.ts'

const CFG = validateModelConfig({ vocabSize: 13, blockSize: 8, nLayer: 2, nHead: 2, dModel: 8 })

function header (obj: unknown, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(obj))
  const out = new Uint8Array(8 + json.length + data.length)
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true)
  out.set(json, 8)
  out.set(data, 8 + json.length)
  return out
}

function sampleCheckpoint (seed: number): Checkpoint {
  const specs = stageParamSpecs(wholeModelLayout(CFG))
  const params = new Map(specs.map(s => [s.name, initialValues(s, seed)]))
  const m = new Map(specs.map(s => [s.name, initialValues(s, seed + 1)]))
  const v = new Map(specs.map(s => [s.name, initialValues(s, seed + 2).map(Math.abs)]))
  return { config: CFG, layout: { stages: 1, bottleneck: 0, stage: null }, params, optimizer: { step: 7, m, v }, train: { step: 7, seed }, info: { tokenizer: 'byte' } }
}

describe('train: safetensors', function () {
  it('round-trips f32 and i32 tensors with metadata, data aligned to 8 bytes', () => {
    const a = Float32Array.from([1.5, -2, Math.PI, 0])
    const b = Int32Array.from([-1, 2, 2147483647])
    const bytes = encodeSafetensors([['a', { dtype: 'F32', shape: [2, 2], data: a }], ['b', { dtype: 'I32', shape: [3], data: b }]], { note: 'hi' })
    const f = decodeSafetensors(bytes)
    assert.equal(f.dataOffset % 8, 0)
    assert.deepEqual(f.metadata, { note: 'hi' })
    assert.deepEqual(f.tensors.get('a'), { dtype: 'F32', shape: [2, 2], data: a })
    assert.deepEqual(f.tensors.get('b'), { dtype: 'I32', shape: [3], data: b })
    // the header is the documented format, readable without our decoder
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true))
    const h = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)))
    assert.deepEqual(h.a, { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] })
    assert.deepEqual(h.b, { dtype: 'I32', shape: [3], data_offsets: [16, 28] })
  })

  it('decodes a hand-written file (unaligned data) and rejects malformed ones with SafetensorsError', () => {
    const data = new Uint8Array(new Float32Array([1, 2, 3]).buffer)
    const f = decodeSafetensors(header({ x: { dtype: 'F32', shape: [3], data_offsets: [0, 12] } }, data))
    assert.deepEqual(f.tensors.get('x')?.data, Float32Array.from([1, 2, 3]))
    const bad: Array<[Uint8Array, RegExp]> = [
      [new Uint8Array(5), /too short/],
      [header({ x: { dtype: 'F32', shape: [3], data_offsets: [0, 12] } }, data).subarray(0, 20), /truncated/],
      [header({ x: { dtype: 'F32', shape: [3], data_offsets: [0, 12] } }, data.subarray(0, 8)), /truncated/],
      [header({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, data), /trailing/],
      [header({ x: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }, data), /bytes for shape/],
      [header({ x: { dtype: 'F16', shape: [6], data_offsets: [0, 12] } }, data), /unsupported dtype/],
      [header({ x: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, y: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, data), /gap or overlap/],
      [header({ x: { dtype: 'F32', shape: [-3], data_offsets: [0, 12] } }, data), /bad shape/],
      [header({ __metadata__: { n: 1 } }), /__metadata__/],
      [header([1, 2]), /JSON object/],
      [(() => { const b = header({}); b[9] = 0xff; return b })(), /UTF-8 JSON/]
    ]
    for (const [bytes, msg] of bad) assert.throws(() => decodeSafetensors(bytes), (e: unknown) => e instanceof SafetensorsError && msg.test(e.message), String(msg))
  })
})

describe('train: checkpoints', function () {
  let dir: string
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'layerswarm-ckpt-')) })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('round-trips parameters, optimizer state and trainer state, leaving no temp files', async () => {
    const ck = sampleCheckpoint(1)
    const path = join(dir, checkpointFileName(7))
    await saveCheckpoint(path, ck)
    assert.deepEqual((await readdir(dir)).sort(), ['step-000007.optim.safetensors', 'step-000007.safetensors'])
    const back = await loadCheckpoint(path)
    assert.deepEqual(back, ck)
    const paramsOnly = await loadCheckpoint(path, { optimizer: false })
    assert.equal(paramsOnly.optimizer, undefined)
    assert.deepEqual(paramsOnly.params, ck.params)
    // the model file alone is a plain safetensors file with HF-style names
    const f = decodeSafetensors(await readFile(path))
    assert.ok(f.tensors.has('h.1.attn.c_attn.weight') && f.tensors.has('lm_head.weight'))
    await saveCheckpoint(join(dir, checkpointFileName(12)), ck)
    assert.equal(await latestCheckpoint(dir), join(dir, 'step-000012.safetensors'))
  })

  it('truncated, corrupted, mixed or missing files give CheckpointCorruptError', async () => {
    const path = join(dir, 'a.safetensors')
    await saveCheckpoint(path, sampleCheckpoint(1))
    const good = await readFile(path)
    const expectCorrupt = async (msg: RegExp): Promise<void> => {
      await assert.rejects(loadCheckpoint(path), (e: unknown) => e instanceof CheckpointCorruptError && msg.test(e.message))
    }
    await truncate(path, good.length - 3)
    await expectCorrupt(/truncated/)
    const flipped = Uint8Array.from(good)
    flipped[flipped.length - 100] ^= 0x40
    await writeFile(path, flipped)
    await expectCorrupt(/checksum/)
    await writeFile(path, new Uint8Array(4))
    await expectCorrupt(/too short/)
    // a model file next to the optimizer file of another save
    await writeFile(path, good)
    await saveCheckpoint(join(dir, 'b.safetensors'), sampleCheckpoint(2))
    await copyFile(join(dir, 'b.optim.safetensors'), optimizerPathFor(path))
    await expectCorrupt(/another save/)
    await rm(optimizerPathFor(path))
    await expectCorrupt(/cannot read/)
    await assert.rejects(loadCheckpoint(join(dir, 'nope.safetensors')), CheckpointCorruptError)
    // a safetensors file that is not a layerswarm checkpoint
    await writeFile(path, encodeSafetensors([], { format: 'other' }))
    await expectCorrupt(/not a layerswarm\.model/)
  })

  it('refuses to save tensors that do not fit the layout (CheckpointMismatchError)', async () => {
    const ck = sampleCheckpoint(1)
    ck.params.set('wte.weight', new Float32Array(3))
    await assert.rejects(saveCheckpoint(join(dir, 'x.safetensors'), ck), CheckpointMismatchError)
    ck.params.delete('wte.weight')
    await assert.rejects(saveCheckpoint(join(dir, 'x.safetensors'), ck), CheckpointMismatchError)
    assert.deepEqual(await readdir(dir), [])
  })
})
