// GPT-2's tokenizer files, as transformers' GPT2Tokenizer / GPT2TokenizerFast read them, derived
// offline from gpt-tokenizer's bundled r50k_base rank table (the one core/data/tokenizer.ts encodes with):
//   vocab.json               token -> id, each token's bytes spelled with GPT-2's byte-to-unicode map
//   merges.txt               "#version: 0.2", then one merge "a b" per line, in rank order
//   tokenizer_config.json    GPT2Tokenizer, <|endoftext|> as bos/eos/unk, model_max_length
//   special_tokens_map.json  <|endoftext|> (id 50256)
// The rank table holds token bytes only; a merge list is not in it. tiktoken merges the adjacent pair
// whose concatenation has the lowest rank, so the pair that makes token r is what BPE over r's bytes,
// with only ranks below r allowed, has left at the end: exactly two lower-ranked tokens.
// tokenizer.json, the one-file form of the same vocabulary, is gpt2-tokenizer-json.ts's.
import { LayerswarmError } from '../errors.ts'

export const GPT2_EOT_TOKEN = '<|endoftext|>'
export const GPT2_EOT_ID = 50256

/** The rank table is not what GPT-2's is (a changed gpt-tokenizer): no files rather than wrong ones. */
export class Gpt2RanksError extends LayerswarmError {
  constructor (message: string) {
    super('ERR_GPT2_RANKS', message)
  }
}

/**
 * GPT-2's byte -> printable character map: the printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ')
 * stand for themselves, every other byte (space, controls, ...) for U+0100 + n in byte order.
 */
export function gpt2ByteToUnicode (): string[] {
  const map = new Array<string>(256)
  let n = 0
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)
    map[b] = String.fromCharCode(printable ? b : 256 + n++)
  }
  return map
}

export interface Gpt2Vocabulary {
  /** Token strings (byte-to-unicode spelled) by id, 0..50256; the last is <|endoftext|>. */
  readonly tokens: readonly string[]
  /** Merges in priority order: merge i makes token 256 + i. */
  readonly merges: ReadonlyArray<readonly [string, string]>
}

/** A token's bytes as a binary (latin1) string: a cheap, exact Map key. */
function bytesKey (entry: string | number[]): string {
  return typeof entry === 'string' ? Buffer.from(entry, 'utf8').toString('latin1') : String.fromCharCode(...entry)
}

/** The pair of tokens BPE leaves when it may use only ranks below `limit` on `bytes` (length >= 2). */
function lastMerge (bytes: string, ranks: ReadonlyMap<string, number>, limit: number): [string, string] | null {
  const parts = Array.from(bytes)
  while (parts.length > 2) {
    let best = -1
    let bestRank = limit
    for (let i = 0; i + 1 < parts.length; i++) {
      const r = ranks.get(parts[i] + parts[i + 1])
      if (r !== undefined && r < bestRank) { bestRank = r; best = i }
    }
    if (best < 0) return null
    parts.splice(best, 2, parts[best] + parts[best + 1])
  }
  return parts.length === 2 ? [parts[0], parts[1]] : null
}

/** vocab and merges from a tiktoken-style rank table (entry r: token r's text, or its bytes when not UTF-8). */
export function deriveGpt2Vocabulary (table: ReadonlyArray<string | number[]>): Gpt2Vocabulary {
  if (table.length !== GPT2_EOT_ID) throw new Gpt2RanksError(`the r50k_base rank table has ${table.length} tokens, not GPT-2's ${GPT2_EOT_ID}`)
  const keys = table.map(bytesKey)
  const ranks = new Map<string, number>()
  keys.forEach((k, r) => ranks.set(k, r))
  if (ranks.size !== keys.length) throw new Gpt2RanksError('the r50k_base rank table repeats a token')
  const toChar = gpt2ByteToUnicode()
  const spell = (k: string): string => { let s = ''; for (let i = 0; i < k.length; i++) s += toChar[k.charCodeAt(i)]; return s }
  const merges: Array<[string, string]> = []
  for (let r = 0; r < keys.length; r++) {
    const k = keys[r]
    if (k.length === 1) {
      if (r >= 256) throw new Gpt2RanksError(`token ${r} is a single byte after the 256 byte tokens`)
      continue
    }
    if (r < 256) throw new Gpt2RanksError(`token ${r} is ${k.length} bytes among the 256 byte tokens`)
    const pair = lastMerge(k, ranks, r)
    if (pair == null) throw new Gpt2RanksError(`token ${r} cannot be built from two lower-ranked tokens`)
    merges.push([spell(pair[0]), spell(pair[1])])
  }
  return { tokens: [...keys.map(spell), GPT2_EOT_TOKEN], merges }
}

let cached: Gpt2Vocabulary | undefined

/** GPT-2's vocabulary and merges from gpt-tokenizer's bundled ranks (derived once per process: 0.5-0.7 s on a loaded 2-core machine). */
export async function gpt2Vocabulary (): Promise<Gpt2Vocabulary> {
  if (cached == null) {
    const table = (await import('gpt-tokenizer/bpeRanks/r50k_base')).default
    cached = deriveGpt2Vocabulary(table)
  }
  return cached
}

/** vocab.json ordered by id (a JS object would put integer-like tokens such as "0" first). */
export function vocabJson (tokens: readonly string[]): string {
  return '{' + tokens.map((t, id) => `${JSON.stringify(t)}: ${id}`).join(', ') + '}\n'
}

export function mergesTxt (merges: ReadonlyArray<readonly [string, string]>): string {
  return '#version: 0.2\n' + merges.map(([a, b]) => `${a} ${b}\n`).join('')
}

/** tokenizer_config.json: GPT-2's settings (no prefix space, no bos added) with our context length. */
export function gpt2TokenizerConfig (modelMaxLength: number): Record<string, unknown> {
  return {
    tokenizer_class: 'GPT2Tokenizer',
    model_max_length: modelMaxLength,
    add_prefix_space: false,
    add_bos_token: false,
    errors: 'replace',
    clean_up_tokenization_spaces: false,
    bos_token: GPT2_EOT_TOKEN,
    eos_token: GPT2_EOT_TOKEN,
    unk_token: GPT2_EOT_TOKEN,
    added_tokens_decoder: {
      [GPT2_EOT_ID]: { content: GPT2_EOT_TOKEN, lstrip: false, normalized: true, rstrip: false, single_word: false, special: true }
    }
  }
}

export const GPT2_SPECIAL_TOKENS_MAP = { bos_token: GPT2_EOT_TOKEN, eos_token: GPT2_EOT_TOKEN, unk_token: GPT2_EOT_TOKEN }

/** vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json: [name, text] each. */
export function gpt2TokenizerFileTexts ({ tokens, merges }: Gpt2Vocabulary, modelMaxLength: number): Array<[string, string]> {
  const json = (o: unknown): string => JSON.stringify(o, null, 2) + '\n'
  return [
    ['vocab.json', vocabJson(tokens)],
    ['merges.txt', mergesTxt(merges)],
    ['tokenizer_config.json', json(gpt2TokenizerConfig(modelMaxLength))],
    ['special_tokens_map.json', json(GPT2_SPECIAL_TOKENS_MAP)]
  ]
}
