// `layerswarm data prepare`: text / JSON-lines files -> token shards with a manifest of their
// SHA-256s (core/data/prepare.ts; docs/data.md). The folder it writes is what `train --local --data`
// and `start --data` read; its data id pins it in a run manifest.
import { resolve } from 'node:path'
import type { Command } from 'commander'
import { prepareDataset, DEFAULT_SHARD_TOKENS } from '../../core/data/index.ts'
import { intFlag, numFlag } from '../flags.ts'

interface PrepareFlags {
  input: string
  out: string
  tokenizer: string
  shardTokens?: string
  valFraction: string
  splitSeed: string
  tokenWidth?: string
  textField: string
  json?: boolean
}

export function register (program: Command): void {
  const data = program.command('data').description('prepare datasets')
  data.command('prepare')
    .description('tokenize text (.txt, .txt.gz) or JSON lines (.jsonl with a "text" field), a file or a folder, into token shards + manifest.json')
    .requiredOption('--input <file|dir>', 'a data file, or a folder read recursively in sorted order')
    .requiredOption('--out <dir>', 'output folder (new, or empty)')
    .option('--tokenizer <name>', 'byte or gpt2', 'byte')
    .option('--shard-tokens <n>', `tokens per shard file (default ${DEFAULT_SHARD_TOKENS})`)
    .option('--val-fraction <x>', 'share of documents in the val split, in [0, 1)', '0.01')
    .option('--split-seed <n>', 'salt of the per-document split hash', '0')
    .option('--token-width <bytes>', '2 or 4 (default: 2 when the vocabulary has <= 65536 tokens)')
    .option('--text-field <name>', 'JSON-lines field holding the text', 'text')
    .option('--json', 'print the manifest as one JSON object on stdout')
    .action(async (flags: PrepareFlags) => {
      const t0 = performance.now()
      const { dir, manifest } = await prepareDataset({
        input: resolve(flags.input),
        out: resolve(flags.out),
        tokenizer: flags.tokenizer,
        shardTokens: flags.shardTokens != null ? intFlag('--shard-tokens', flags.shardTokens, 1) : undefined,
        valFraction: numFlag('--val-fraction', flags.valFraction, 0),
        splitSeed: intFlag('--split-seed', flags.splitSeed, 0),
        tokenWidth: flags.tokenWidth != null ? intFlag('--token-width', flags.tokenWidth, 1) : undefined,
        textField: flags.textField,
        onShard: flags.json === true ? undefined : (split, s) => { process.stderr.write(`wrote ${s.file}: ${s.tokens} tokens\n`) }
      })
      const seconds = (performance.now() - t0) / 1000
      if (flags.json === true) {
        process.stdout.write(JSON.stringify({ dir, seconds: Math.round(seconds * 1000) / 1000, ...manifest }) + '\n')
        return
      }
      const c = manifest.content
      const u = manifest.info.unigramEvalLoss
      process.stdout.write(`prepared ${dir}\n` +
        `data id   ${manifest.dataId}\n` +
        `tokenizer ${c.tokenizer} (vocab ${c.vocabSize}, ${c.tokenWidth}-byte tokens)\n` +
        `train     ${c.splits.train.tokens} tokens in ${c.splits.train.shards.length} shards\n` +
        `val       ${c.splits.val.tokens} tokens in ${c.splits.val.shards.length} shards (${manifest.info.valDocuments} of ${manifest.info.documents} documents)\n` +
        `unigram   ${u != null ? u.toFixed(4) + ' nats/token on val' : 'n/a (no val tokens)'}\n` +
        `took      ${seconds.toFixed(1)} s (${Math.round((c.splits.train.tokens + c.splits.val.tokens) / seconds)} tokens/s)\n`)
    })
}
