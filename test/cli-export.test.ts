// `layerswarm export --format hf` (core/export/hf.ts) as a real CLI process: a llama model with
// grouped-query attention (checkpoint of a 2-stage split) and a GPT-2 model are exported, then read by
// an independent PyTorch forward written below to transformers' semantics (LlamaForCausalLM:
// RMSNorm, rotate_half RoPE, repeat_kv, SiLU MLP; GPT2LMHeadModel: Conv1D [in, out] weights,
// gelu_new), which parses model.safetensors itself and must give layerswarm's logits within 1e-4.
// Needs /usr/bin/python3 with torch (Debian's python3-torch): those two tests skip, saying so, without
// it. Bad input (missing checkpoint, unknown format, non-empty out dir, a stage-only or bottlenecked
// checkpoint, a file that is not a checkpoint) exits 2 with a clear message.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import { validateModelConfig, type ModelConfig } from '../core/model/config.ts'
import { GptModel } from '../core/model/gpt.ts'
import { saveCheckpoint } from '../core/train/checkpoint.ts'
import { decodeSafetensors } from '../core/train/safetensors.ts'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'
import { assertBadInputExits2 } from './cli-main-helpers.ts'
import { runCli } from './cli-helpers.ts'

const PYTHON = '/usr/bin/python3'
const T = 7

/** transformers' forward semantics, written independently of layerswarm, in float64. */
const FORWARD_PY = String.raw`
import json, struct, sys, math
import torch
d, tokens = sys.argv[1], json.loads(sys.argv[2])
cfg = json.load(open(d + '/config.json'))
raw = open(d + '/model.safetensors', 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
header = json.loads(raw[8:8 + n])
assert header['__metadata__']['format'] == 'pt'
W = {}
for name, h in header.items():
    if name == '__metadata__': continue
    assert h['dtype'] == 'F32', name
    a, b = h['data_offsets']
    W[name] = torch.frombuffer(bytearray(raw[8 + n + a:8 + n + b]), dtype=torch.float32).reshape(h['shape']).double()
ids = torch.tensor(tokens)
T = len(tokens)
causal = torch.full((T, T), float('-inf'), dtype=torch.float64).triu(1)
def attend(q, k, v):  # [NH, T, hd] each
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + causal
    return torch.softmax(s, -1) @ v
used = set()
def w(name):
    used.add(name)
    return W[name]
if cfg['architectures'] == ['LlamaForCausalLM']:
    C, NH, NKV = cfg['hidden_size'], cfg['num_attention_heads'], cfg['num_key_value_heads']
    hd, eps = C // NH, cfg['rms_norm_eps']
    def rms(x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight
    inv = 1.0 / (cfg['rope_theta'] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    emb = torch.cat([ang, ang], -1)
    cos, sin = emb.cos(), emb.sin()
    def rotate_half(x):
        x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
        return torch.cat([-x2, x1], -1)
    x = w('model.embed_tokens.weight')[ids]
    for l in range(cfg['num_hidden_layers']):
        p = 'model.layers.%d.' % l
        h = rms(x, w(p + 'input_layernorm.weight'))
        q = (h @ w(p + 'self_attn.q_proj.weight').T).view(T, NH, hd).transpose(0, 1)
        k = (h @ w(p + 'self_attn.k_proj.weight').T).view(T, NKV, hd).transpose(0, 1)
        v = (h @ w(p + 'self_attn.v_proj.weight').T).view(T, NKV, hd).transpose(0, 1)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(NH // NKV, 0), v.repeat_interleave(NH // NKV, 0)  # repeat_kv
        x = x + attend(q, k, v).transpose(0, 1).reshape(T, C) @ w(p + 'self_attn.o_proj.weight').T
        h = rms(x, w(p + 'post_attention_layernorm.weight'))
        g = torch.nn.functional.silu(h @ w(p + 'mlp.gate_proj.weight').T) * (h @ w(p + 'mlp.up_proj.weight').T)
        x = x + g @ w(p + 'mlp.down_proj.weight').T
    logits = rms(x, w('model.norm.weight')) @ w('lm_head.weight').T
else:
    assert cfg['architectures'] == ['GPT2LMHeadModel'] and cfg['activation_function'] == 'gelu_new'
    C, NH = cfg['n_embd'], cfg['n_head']
    hd, eps = C // NH, cfg['layer_norm_epsilon']
    def ln(x, p):
        return torch.nn.functional.layer_norm(x, (C,), w(p + '.weight'), w(p + '.bias'), eps)
    def conv1d(x, p):  # transformers' Conv1D: weight [in, out]
        return x @ w(p + '.weight') + w(p + '.bias')
    x = w('transformer.wte.weight')[ids] + w('transformer.wpe.weight')[:T]
    for l in range(cfg['n_layer']):
        p = 'transformer.h.%d.' % l
        q, k, v = conv1d(ln(x, p + 'ln_1'), p + 'attn.c_attn').split(C, -1)
        q, k, v = [t.view(T, NH, hd).transpose(0, 1) for t in (q, k, v)]
        x = x + conv1d(attend(q, k, v).transpose(0, 1).reshape(T, C), p + 'attn.c_proj')
        x = x + conv1d(torch.nn.functional.gelu(conv1d(ln(x, p + 'ln_2'), p + 'mlp.c_fc'), approximate='tanh'), p + 'mlp.c_proj')
    logits = ln(x, 'transformer.ln_f') @ w('lm_head.weight').T
assert used == set(W), 'unused tensors: %s' % sorted(set(W) - used)
print(json.dumps({'logits': logits.tolist(), 'tensors': len(W)}))
`

function hasTorch (): boolean {
  const r = spawnSync(PYTHON, ['-c', 'import torch'], { stdio: 'ignore', timeout: 60_000 })
  return r.status === 0
}

/** Saves a loud (scaled-up) seeded model as a whole-model checkpoint; returns its logits [T,V] on `tokens`. */
async function makeCheckpoint (be: ComputeBackend, cfg: ModelConfig, path: string, tokens: Int32Array, stages: number, info?: Record<string, unknown>): Promise<Float32Array> {
  const m = new GptModel(be, cfg, { seed: 21, stages })
  try {
    const params = new Map<string, Float32Array>()
    for (const [k, v] of await m.downloadParams()) params.set(k, /(norm|ln_\d|ln_f)\.weight$/.test(k) ? v.map((_, i) => 1 + 0.2 * Math.sin(i)) : v.map(x => x * 8))
    await m.loadParams(params)
    await saveCheckpoint(path, { config: cfg, layout: { stages, bottleneck: 0, stage: null }, params, ...(info != null ? { info } : {}) })
    await m.forward(tokens, 1, tokens.length)
    return await m.logits()
  } finally {
    m.dispose()
  }
}

describe('cli: export --format hf', function () {
  this.timeout(180_000)
  let be: ComputeBackend
  let dir: string
  let torch = false
  before(async () => {
    be = await createCpuBackend({ threads: 1 })
    dir = await mkdtemp(join(tmpdir(), 'ls-export-'))
    await writeFile(join(dir, 'forward.py'), FORWARD_PY)
    torch = hasTorch()
  })
  after(async () => {
    await be?.dispose()
    if (dir != null) await rm(dir, { recursive: true, force: true })
  })

  const cases: Array<[string, ModelConfig, number, string, number]> = [
    ['llama with grouped-query attention (2 stages merged)', validateModelConfig({ arch: 'llama', vocabSize: 48, blockSize: 16, nLayer: 2, nHead: 4, nKvHead: 2, dModel: 32, ffnHidden: 40, ropeTheta: 500 }), 2, 'LlamaForCausalLM', 2 + 2 * 9 + 1],
    ['gpt2', validateModelConfig({ vocabSize: 40, blockSize: 16, nLayer: 2, nHead: 4, dModel: 32 }), 1, 'GPT2LMHeadModel', 2 + 2 * 12 + 3]
  ]
  for (const [name, cfg, stages, arch, nTensors] of cases) {
    it(`${name}: config.json and model.safetensors under transformers' names; a PyTorch forward gives our logits within 1e-4`, async function () {
      const tag = arch.slice(0, 5)
      const ckpt = join(dir, `${tag}.safetensors`)
      const tokens = Int32Array.from({ length: T }, (_, i) => (i * 11 + 5) % cfg.vocabSize)
      const ours = await makeCheckpoint(be, cfg, ckpt, tokens, stages, { tokenizer: 'byte' })
      const out = join(dir, `${tag}-hf`)
      const r = await runCli(['export', '--checkpoint', ckpt, '--format', 'hf', '--out', out], { timeoutMs: 90_000 })
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stdout, new RegExp(`exported ${arch} \\(\\d+ parameters, ${nTensors} tensors\\)`))
      const hf = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'))
      assert.deepEqual(hf.architectures, [arch])
      assert.equal(hf.tie_word_embeddings, false)
      assert.equal(hf.vocab_size, cfg.vocabSize)
      assert.equal(hf.eos_token_id, 0, 'the byte tokenizer\'s end-of-text')
      if (arch === 'LlamaForCausalLM') {
        assert.deepEqual([hf.hidden_size, hf.intermediate_size, hf.num_attention_heads, hf.num_key_value_heads, hf.num_hidden_layers, hf.rms_norm_eps, hf.rope_theta, hf.max_position_embeddings],
          [32, 40, 4, 2, 2, 1e-5, 500, 16])
      } else {
        assert.deepEqual([hf.n_embd, hf.n_head, hf.n_layer, hf.n_positions], [32, 4, 2, 16])
      }
      const st = decodeSafetensors(await readFile(join(out, 'model.safetensors')))
      assert.equal(st.tensors.size, nTensors)
      assert.ok(st.tensors.has('lm_head.weight'))
      if (arch === 'LlamaForCausalLM') {
        assert.deepEqual(st.tensors.get('model.layers.1.self_attn.k_proj.weight')?.shape, [16, 32])
        assert.deepEqual(st.tensors.get('model.layers.0.mlp.up_proj.weight')?.shape, [40, 32])
      } else {
        assert.deepEqual(st.tensors.get('transformer.h.0.mlp.c_fc.weight')?.shape, [32, 128])
      }

      if (!torch) { this.skip(); return } // no /usr/bin/python3 with torch (apt-get install python3-torch): the format checks above ran
      const py = spawnSync(PYTHON, [join(dir, 'forward.py'), out, JSON.stringify([...tokens])], { encoding: 'utf8', timeout: 120_000 })
      assert.equal(py.status, 0, py.stderr)
      const ref = JSON.parse(py.stdout) as { logits: number[][], tensors: number }
      assert.equal(ref.tensors, nTensors)
      let maxDiff = 0; let maxAbs = 0
      for (let t = 0; t < T; t++) {
        for (let v = 0; v < cfg.vocabSize; v++) {
          maxDiff = Math.max(maxDiff, Math.abs(ref.logits[t][v] - ours[t * cfg.vocabSize + v]))
          maxAbs = Math.max(maxAbs, Math.abs(ref.logits[t][v]))
        }
      }
      assert.ok(maxAbs > 1, `logits far from trivial (max |logit| ${maxAbs})`)
      assert.ok(maxDiff < 1e-4, `max |PyTorch - layerswarm| = ${maxDiff} (max |logit| ${maxAbs})`)
      console.log(`      ${arch}: max |PyTorch float64 - layerswarm| over ${T} x ${cfg.vocabSize} logits = ${maxDiff.toExponential(2)} (max |logit| ${maxAbs.toFixed(2)})`)
    })
  }

  it('bad input exits 2 with a clear message and writes nothing', async () => {
    const cfg = validateModelConfig({ arch: 'llama', vocabSize: 16, blockSize: 8, nLayer: 2, nHead: 2, dModel: 8 })
    const whole = join(dir, 'whole.safetensors')
    const tokens = Int32Array.from([1, 2, 3])
    await makeCheckpoint(be, cfg, whole, tokens, 1)
    const stageOnly = join(dir, 'stage.safetensors')
    const bottleneck = join(dir, 'bottleneck.safetensors')
    const m = new GptModel(be, cfg, { stages: 2, bottleneck: 4 })
    try {
      await saveCheckpoint(stageOnly, { config: cfg, layout: { stages: 2, bottleneck: 4, stage: 1 }, params: await m.stages[1].params.download() })
      await saveCheckpoint(bottleneck, { config: cfg, layout: { stages: 2, bottleneck: 4, stage: null }, params: await m.downloadParams() })
    } finally {
      m.dispose()
    }
    const notCkpt = join(dir, 'notes.safetensors')
    await writeFile(notCkpt, 'not a checkpoint')
    const full = join(dir, 'full')
    await mkdir(full)
    await writeFile(join(full, 'keep.txt'), 'x')
    const fresh = join(dir, 'never-written')
    const cases: Array<[string[], RegExp]> = [
      [['--checkpoint', join(dir, 'missing.safetensors'), '--out', fresh], /--checkpoint .*missing\.safetensors does not exist/],
      [['--checkpoint', whole, '--format', 'onnx', '--out', fresh], /--format onnx is not one of hf/],
      [['--checkpoint', whole, '--out', full], /--out .*full is not empty/],
      [['--checkpoint', whole, '--out', notCkpt], /--out .* exists and is not a directory/],
      [['--checkpoint', stageOnly, '--out', fresh], /holds stage 1 of 2 only; merge the stages/],
      [['--checkpoint', bottleneck, '--out', fresh], /bottleneck of width 4/],
      [['--checkpoint', notCkpt, '--out', fresh], /--checkpoint .*notes\.safetensors: /],
      [['--checkpoint', whole], /required option '--out <dir>'/]
    ]
    await assertBadInputExits2('export', cases, 90_000)
    assert.deepEqual((await readFile(join(full, 'keep.txt'), 'utf8')), 'x')
    await assert.rejects(readFile(join(fresh, 'config.json')), /ENOENT/)
  })
})
