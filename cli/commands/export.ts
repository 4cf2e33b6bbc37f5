// `layerswarm export --checkpoint FILE --format hf --out DIR`: a whole-model checkpoint as a Hugging
// Face model directory (core/export/hf.ts). Every bad input is a ConfigError (exit 2): a missing or
// unreadable checkpoint, an unknown format or tokenizer, an out dir that exists and is not empty.
// GPT-2 tokenizer files go with a gpt2-tokenized model; the byte tokenizer gets none (said on stdout).
import { stat } from 'node:fs/promises'
import type { Command } from 'commander'
import { ConfigError, LayerswarmError } from '../../core/errors.ts'
import { EXPORT_FORMATS, EXPORT_TOKENIZERS, checkExportDir, exportHf, ExportError, type ExportTokenizer } from '../../core/export/hf.ts'
import { loadCheckpoint, type Checkpoint } from '../../core/train/checkpoint.ts'
import { resolveCheckpointPath } from '../flags.ts'

export interface ExportFlags {
  checkpoint?: string
  format?: string
  out?: string
  tokenizer?: string
}

/** What the export says about tokenizer files, after its file list. */
function tokenizerNote (t: ExportTokenizer): string {
  switch (t) {
    case 'gpt2': return 'tokenizer gpt2: GPT-2 tokenizer files written (tokenizer.json, vocab.json, merges.txt, tokenizer_config.json; AutoTokenizer / GPT2TokenizerFast load them)'
    case 'byte': return 'tokenizer byte: no tokenizer files (transformers has no byte-level tokenizer with our ids without a custom one: id = UTF-8 byte, end-of-text 0)'
    case 'none': return 'tokenizer none: no tokenizer files'
  }
}

export function register (program: Command): void {
  program.command('export')
    .description('write a whole-model checkpoint as a Hugging Face model directory (config.json + model.safetensors)')
    .requiredOption('--checkpoint <file|dir>', 'whole-model checkpoint (.safetensors), or the latest in a folder')
    .option('--format <name>', `output format: ${EXPORT_FORMATS.join(', ')} (transformers' LlamaForCausalLM / GPT2LMHeadModel)`, 'hf')
    .requiredOption('--out <dir>', 'new or empty directory to write')
    .option('--tokenizer <name>', `tokenizer files to write: ${EXPORT_TOKENIZERS.join(', ')} (gpt2 only writes files; default: the checkpoint's, else by vocabulary size)`)
    .action(async (flags: ExportFlags) => { await runExport(flags) })
}

export async function runExport (flags: ExportFlags): Promise<void> {
  const format = flags.format ?? 'hf'
  if (!(EXPORT_FORMATS as readonly string[]).includes(format)) throw new ConfigError(`--format ${format} is not one of ${EXPORT_FORMATS.join(', ')}`)
  if (flags.tokenizer != null && !(EXPORT_TOKENIZERS as readonly string[]).includes(flags.tokenizer)) throw new ExportError(`--tokenizer ${flags.tokenizer} is not one of ${EXPORT_TOKENIZERS.join(', ')}`)
  const out = flags.out as string
  await checkExportDir(out) // before the (possibly long) read of the checkpoint
  const given = flags.checkpoint as string
  if (await stat(given).catch(() => null) == null) throw new ExportError(`--checkpoint ${given} does not exist`)
  let ckpt: Checkpoint
  try {
    ckpt = await loadCheckpoint(await resolveCheckpointPath(given), { optimizer: false })
  } catch (err) {
    if (err instanceof ConfigError || !(err instanceof LayerswarmError)) throw err
    throw new ExportError(`--checkpoint ${given}: ${err.message}`, { cause: err })
  }
  const r = await exportHf(ckpt, out, { tokenizer: flags.tokenizer })
  process.stdout.write(`exported ${r.architecture} (${r.parameters} parameters, ${r.tensors} tensors) to ${r.dir}: ${r.files.join(', ')}\n${tokenizerNote(r.tokenizer)}\n`)
}
