// Export to Hugging Face: a whole-model checkpoint as a `transformers` model directory,
//   config.json        LlamaForCausalLM (arch llama) or GPT2LMHeadModel (gpt2), untied head
//   model.safetensors  f32 tensors under transformers' names and layouts (metadata format "pt")
// Where data changes shape on the way:
//   llama  our fused qkv_proj [C + 2 Ckv, C] splits into q_proj [C, C], k_proj and v_proj [Ckv, C];
//          gate_up_proj [2H, C] into gate_proj and up_proj [H, C] (the SwiGLU kernel reads gate at
//          [0, H), up at [H, 2H)). Our matmul weights are [out, in] as nn.Linear's: no transposes.
//          RoPE: our kernel rotates the pairs (i, i + hd/2) of each head by t x theta^(-2i/hd),
//          transformers' rotate_half convention, so q/k rows need no permutation.
//   gpt2   HF's Conv1D stores c_attn, c_proj, c_fc and mlp.c_proj as [in, out]: ours are [out, in],
//          so those four weights are transposed; everything else keeps its layout, `transformer.`
//          prefixed. GELU is the tanh approximation ("gelu_new"), LayerNorm eps 1e-5.
// generation_config.json (bos/eos) goes with it where the tokenizer's end-of-text is known, and the
// tokenizer files where the tokenizer is GPT-2's (gpt2-tokenizer-files.ts, gpt2-tokenizer-json.ts);
// the byte tokenizer has no transformers counterpart with our ids, so it gets none.
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ConfigError } from '../errors.ts'
import { ffnHiddenOf, isLlama, kvHeadsOf, LLAMA_NORM_EPS, LLAMA_ROPE_THETA, type ModelConfig } from '../model/config.ts'
import { blockParamNames, llamaBlockParamNames } from '../model/params.ts'
import type { Checkpoint } from '../train/checkpoint.ts'
import { encodeSafetensors, type StTensor } from '../train/safetensors.ts'
import { GPT2_EOT_ID, gpt2TokenizerFileTexts, gpt2Vocabulary } from './gpt2-tokenizer-files.ts'
import { gpt2TokenizerJson } from './gpt2-tokenizer-json.ts'

/** An export that cannot be made from this input (a stage-only checkpoint, a bottleneck, an unusable out dir). */
export class ExportError extends ConfigError {
  override readonly code = 'ERR_EXPORT'
}

export const EXPORT_FORMATS = ['hf'] as const
export type ExportFormat = typeof EXPORT_FORMATS[number]

export const EXPORT_TOKENIZERS = ['gpt2', 'byte', 'none'] as const
export type ExportTokenizer = typeof EXPORT_TOKENIZERS[number]

/**
 * The tokenizer an export is for: `flag` where given, else the one the checkpoint records, else the
 * vocabulary's size says (50257 -> gpt2, 256 -> byte; older checkpoints record nothing), else none.
 */
export function exportTokenizerOf (ckpt: Pick<Checkpoint, 'config' | 'info'>, flag?: string): ExportTokenizer {
  if (flag != null && !(EXPORT_TOKENIZERS as readonly string[]).includes(flag)) throw new ExportError(`--tokenizer ${flag} is not one of ${EXPORT_TOKENIZERS.join(', ')}`)
  const recorded = ckpt.info?.tokenizer
  const V = ckpt.config.vocabSize
  let name: ExportTokenizer
  if (flag != null) name = flag as ExportTokenizer
  else if (recorded != null) name = recorded === 'gpt2' || recorded === 'byte' ? recorded : 'none'
  else name = V === GPT2_EOT_ID + 1 ? 'gpt2' : V === 256 ? 'byte' : 'none'
  if (name === 'gpt2' && V <= GPT2_EOT_ID) {
    throw new ExportError(`the gpt2 tokenizer's ids reach ${GPT2_EOT_ID} but the model's vocabulary is ${V}${flag != null ? '' : ` (the checkpoint records tokenizer ${String(recorded)})`}; give --tokenizer byte or none`)
  }
  return name
}

/** The token ids a tokenizer name implies (recorded in the checkpoint's info): end-of-text. */
function eotOf (tokenizer: unknown): number | null {
  if (tokenizer === 'gpt2') return 50256
  if (tokenizer === 'byte') return 0
  return null
}

/** transformers' config.json for `config` (tokenizer: the checkpoint's recorded tokenizer name). */
export function hfConfig (config: ModelConfig, tokenizer?: unknown): Record<string, unknown> {
  const eot = eotOf(tokenizer)
  const ids = eot != null ? { bos_token_id: eot, eos_token_id: eot } : {}
  if (isLlama(config)) {
    return {
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      hidden_size: config.dModel,
      intermediate_size: ffnHiddenOf(config),
      num_attention_heads: config.nHead,
      num_key_value_heads: kvHeadsOf(config),
      head_dim: config.dModel / config.nHead,
      num_hidden_layers: config.nLayer,
      rms_norm_eps: config.normEps ?? LLAMA_NORM_EPS,
      rope_theta: config.ropeTheta ?? LLAMA_ROPE_THETA,
      rope_scaling: null,
      vocab_size: config.vocabSize,
      max_position_embeddings: config.blockSize,
      hidden_act: 'silu',
      attention_bias: false,
      mlp_bias: false,
      tie_word_embeddings: false,
      torch_dtype: 'float32',
      ...ids
    }
  }
  return {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    vocab_size: config.vocabSize,
    n_positions: config.blockSize,
    n_ctx: config.blockSize,
    n_embd: config.dModel,
    n_layer: config.nLayer,
    n_head: config.nHead,
    n_inner: null,
    activation_function: 'gelu_new',
    layer_norm_epsilon: 1e-5,
    resid_pdrop: 0,
    embd_pdrop: 0,
    attn_pdrop: 0,
    scale_attn_weights: true,
    tie_word_embeddings: false,
    torch_dtype: 'float32',
    ...ids
  }
}

/** [rows, cols] row-major -> [cols, rows]. */
function transpose (a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length)
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c]
  return out
}

/** The tensors of model.safetensors, in transformers' names and layouts, from our parameters. */
export function hfTensors (config: ModelConfig, params: ReadonlyMap<string, Float32Array>): Array<[string, StTensor]> {
  const get = (name: string): Float32Array => {
    const t = params.get(name)
    if (t == null) throw new ExportError(`the checkpoint has no parameter ${name}`)
    return t
  }
  const out: Array<[string, StTensor]> = []
  const add = (name: string, shape: number[], data: Float32Array): void => { out.push([name, { dtype: 'F32', shape, data }]) }
  const C = config.dModel
  const V = config.vocabSize
  if (isLlama(config)) {
    const Ckv = kvHeadsOf(config) * C / config.nHead
    const H = ffnHiddenOf(config)
    add('model.embed_tokens.weight', [V, C], get('embed_tokens.weight'))
    for (let i = 0; i < config.nLayer; i++) {
      const n = llamaBlockParamNames(i)
      const p = `model.layers.${i}`
      const qkv = get(n.qkvw) // rows: q [0, C), k [C, C + Ckv), v [C + Ckv, C + 2 Ckv)
      const gu = get(n.gateUpw) // rows: gate [0, H), up [H, 2H)
      add(`${p}.input_layernorm.weight`, [C], get(n.attnNorm))
      add(`${p}.self_attn.q_proj.weight`, [C, C], qkv.subarray(0, C * C))
      add(`${p}.self_attn.k_proj.weight`, [Ckv, C], qkv.subarray(C * C, (C + Ckv) * C))
      add(`${p}.self_attn.v_proj.weight`, [Ckv, C], qkv.subarray((C + Ckv) * C, (C + 2 * Ckv) * C))
      add(`${p}.self_attn.o_proj.weight`, [C, C], get(n.ow))
      add(`${p}.post_attention_layernorm.weight`, [C], get(n.ffnNorm))
      add(`${p}.mlp.gate_proj.weight`, [H, C], gu.subarray(0, H * C))
      add(`${p}.mlp.up_proj.weight`, [H, C], gu.subarray(H * C, 2 * H * C))
      add(`${p}.mlp.down_proj.weight`, [C, H], get(n.downw))
    }
    add('model.norm.weight', [C], get('norm.weight'))
    add('lm_head.weight', [V, C], get('lm_head.weight'))
    return out
  }
  add('transformer.wte.weight', [V, C], get('wte.weight'))
  add('transformer.wpe.weight', [config.blockSize, C], get('wpe.weight'))
  for (let i = 0; i < config.nLayer; i++) {
    const n = blockParamNames(i)
    const p = `transformer.h.${i}`
    add(`${p}.ln_1.weight`, [C], get(n.ln1w))
    add(`${p}.ln_1.bias`, [C], get(n.ln1b))
    add(`${p}.attn.c_attn.weight`, [C, 3 * C], transpose(get(n.qkvw), 3 * C, C))
    add(`${p}.attn.c_attn.bias`, [3 * C], get(n.qkvb))
    add(`${p}.attn.c_proj.weight`, [C, C], transpose(get(n.attprojw), C, C))
    add(`${p}.attn.c_proj.bias`, [C], get(n.attprojb))
    add(`${p}.ln_2.weight`, [C], get(n.ln2w))
    add(`${p}.ln_2.bias`, [C], get(n.ln2b))
    add(`${p}.mlp.c_fc.weight`, [C, 4 * C], transpose(get(n.fcw), 4 * C, C))
    add(`${p}.mlp.c_fc.bias`, [4 * C], get(n.fcb))
    add(`${p}.mlp.c_proj.weight`, [4 * C, C], transpose(get(n.fcprojw), C, 4 * C))
    add(`${p}.mlp.c_proj.bias`, [C], get(n.fcprojb))
  }
  add('transformer.ln_f.weight', [C], get('ln_f.weight'))
  add('transformer.ln_f.bias', [C], get('ln_f.bias'))
  add('lm_head.weight', [V, C], get('lm_head.weight'))
  return out
}

export interface ExportResult {
  readonly dir: string
  readonly files: readonly string[]
  readonly architecture: string
  readonly tensors: number
  readonly parameters: number
  /** The tokenizer the files are for; tokenizer files are written for gpt2 only. */
  readonly tokenizer: ExportTokenizer
}

/** Refuses an out dir that exists as a file or holds anything: an export never mixes with other files. */
export async function checkExportDir (dir: string): Promise<void> {
  const info = await stat(dir).catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') return null; throw err })
  if (info == null) return
  if (!info.isDirectory()) throw new ExportError(`--out ${dir} exists and is not a directory`)
  const entries = await readdir(dir)
  if (entries.length > 0) throw new ExportError(`--out ${dir} is not empty (${entries.length} entries, e.g. ${entries[0]}); give a new or empty directory`)
}

/**
 * The text files of an export, [name, text] in write order: config.json, generation_config.json
 * where end-of-text is known (what transformers' save_pretrained writes beside a generative model),
 * and for gpt2 tokenizer.json then the files of the slow tokenizer. Each is a pure function of the
 * model config and tokenizer, so the same checkpoint gives the same bytes.
 */
export async function exportTexts (config: ModelConfig, tokenizer: ExportTokenizer): Promise<Array<[string, string]>> {
  const json = (o: unknown): string => JSON.stringify(o, null, 2) + '\n'
  const hf = hfConfig(config, tokenizer)
  const texts: Array<[string, string]> = [['config.json', json(hf)]]
  if (hf.eos_token_id != null) texts.push(['generation_config.json', json({ bos_token_id: hf.bos_token_id, eos_token_id: hf.eos_token_id })])
  if (tokenizer === 'gpt2') {
    const vocab = await gpt2Vocabulary()
    texts.push(['tokenizer.json', gpt2TokenizerJson(vocab)], ...gpt2TokenizerFileTexts(vocab, config.blockSize))
  }
  return texts
}

/** Writes `ckpt` (a whole model: every stage, no bottleneck) as a Hugging Face model directory. */
export async function exportHf (ckpt: Checkpoint, dir: string, opts: { tokenizer?: string, signal?: AbortSignal } = {}): Promise<ExportResult> {
  if (ckpt.layout.stage !== null) {
    throw new ExportError(`the checkpoint holds stage ${ckpt.layout.stage} of ${ckpt.layout.stages} only; merge the stages into one whole-model file first (core/train/merge-checkpoints.ts; the swarm's run end writes one)`)
  }
  if (ckpt.layout.bottleneck > 0) {
    throw new ExportError(`the checkpoint was trained with a bottleneck of width ${ckpt.layout.bottleneck} at its stage boundaries: transformers' ${isLlama(ckpt.config) ? 'LlamaForCausalLM' : 'GPT2LMHeadModel'} has no such layers`)
  }
  const tokenizer = exportTokenizerOf(ckpt, opts.tokenizer)
  // every text is made before anything is written: a failure (e.g. the gpt2 derivation) leaves no half export
  const texts = await exportTexts(ckpt.config, tokenizer)
  const tensors = hfTensors(ckpt.config, ckpt.params)
  await checkExportDir(dir)
  opts.signal?.throwIfAborted()
  await mkdir(dir, { recursive: true })
  const bytes = encodeSafetensors(tensors, { format: 'pt' })
  opts.signal?.throwIfAborted()
  const [configFile, ...rest] = texts
  const files: Array<[string, string | Uint8Array]> = [configFile, ['model.safetensors', bytes], ...rest]
  for (const [name, data] of files) await writeFile(join(dir, name), data, { signal: opts.signal })
  const config = hfConfig(ckpt.config, tokenizer)
  return {
    dir,
    files: files.map(([name]) => name),
    tokenizer,
    architecture: (config.architectures as string[])[0],
    tensors: tensors.length,
    parameters: tensors.reduce((a, [, t]) => a + t.data.length, 0)
  }
}
