// `layerswarm sample`: generate text from a checkpoint, forward only. The prompt goes to stdout
// first, then each new token's text as it is produced.
import type { Command } from 'commander'
import { ConfigError } from '../../core/errors.ts'
import { createTokenizer } from '../../core/data/index.ts'
import { generate } from '../../core/model/generate.ts'
import { GptModel } from '../../core/model/gpt.ts'
import { loadCheckpoint } from '../../core/train/checkpoint.ts'
import { intFlag, makeLogger, numFlag, resolveCheckpointPath, withBackend } from '../flags.ts'

export interface SampleFlags {
  checkpoint?: string
  prompt?: string
  tokens?: string
  temperature?: string
  topK?: string
  seed?: string
  tokenizer?: string
  backend?: string
  threads?: string
  logLevel?: string
}

export function register (program: Command): void {
  program.command('sample')
    .description('generate text from a checkpoint (forward only, sliding context window)')
    .requiredOption('--checkpoint <file|dir>', 'model checkpoint (.safetensors), or the latest in a folder')
    .option('--prompt <text>', 'text to continue (default: start from end-of-text)', '')
    .option('--tokens <n>', 'tokens to generate', '200')
    .option('--temperature <x>', 'softmax temperature (0: greedy)', '0.8')
    .option('--top-k <k>', 'sample among the k most likely tokens (0: all)', '0')
    .option('--seed <n>', 'sampling seed', '0')
    .option('--tokenizer <name>', 'byte or gpt2 (default: the one recorded in the checkpoint)')
    .option('--backend <name>', 'compute backend: cpu, webgpu, a built-in plugin name, or the ./path or package of a backend plugin', 'cpu')
    .option('--threads <n>', 'backend threads (CPU backend)')
    .option('--log-level <level>', 'trace, debug, info, warn, error or silent', 'warn')
    .action(async (flags: SampleFlags) => { await runSample(flags) })
}

export async function runSample (flags: SampleFlags): Promise<void> {
  const logger = makeLogger(flags.logLevel ?? 'warn')
  const n = intFlag('--tokens', flags.tokens ?? '200', 0)
  const temperature = numFlag('--temperature', flags.temperature ?? '0.8', 0)
  const topK = intFlag('--top-k', flags.topK ?? '0', 0)
  const seed = intFlag('--seed', flags.seed ?? '0', 0)
  const threads = flags.threads != null ? intFlag('--threads', flags.threads, 1) : undefined
  const ck = await loadCheckpoint(await resolveCheckpointPath(flags.checkpoint as string), { optimizer: false })
  if (ck.layout.stage !== null) throw new ConfigError(`${flags.checkpoint} holds stage ${ck.layout.stage} only; sampling needs every stage`)
  const recorded = typeof ck.info?.tokenizer === 'string' ? ck.info.tokenizer : undefined
  const tokenizer = await createTokenizer(flags.tokenizer ?? recorded ?? 'byte')
  if (tokenizer.vocabSize > ck.config.vocabSize) throw new ConfigError(`the ${tokenizer.name} tokenizer has ${tokenizer.vocabSize} tokens, the model only ${ck.config.vocabSize}`)
  const promptText = flags.prompt ?? ''
  const prompt = promptText.length > 0 ? Array.from(tokenizer.encode(promptText)) : [tokenizer.eot]

  await withBackend(flags.backend ?? 'cpu', threads, logger, async backend => {
    const model = new GptModel(backend, ck.config, { stages: ck.layout.stages, bottleneck: ck.layout.bottleneck, params: ck.params })
    try {
      process.stdout.write(promptText)
      // decode incrementally: a multi-byte character may span tokens, so print only what decodes cleanly
      const produced: number[] = []
      let printed = ''
      await generate(model, prompt, {
        tokens: n,
        temperature,
        topK,
        seed,
        onToken: id => {
          produced.push(id)
          if (id >= tokenizer.vocabSize) return
          const text = tokenizer.decode(produced.filter(t => t < tokenizer.vocabSize))
          const stable = text.endsWith('\uFFFD') ? text.slice(0, text.lastIndexOf('\uFFFD')) : text
          if (stable.length > printed.length && stable.startsWith(printed)) {
            process.stdout.write(stable.slice(printed.length).replaceAll('\0', '\n'))
            printed = stable
          }
        }
      })
      process.stdout.write('\n')
    } finally {
      model.dispose()
    }
  })
}
