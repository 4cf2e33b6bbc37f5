// Tokenizers: text <-> token ids. Two ship: 'byte' (UTF-8 bytes, vocab 256, the default for small
// models) and 'gpt2' (GPT-2's r50k BPE from gpt-tokenizer, vocab 50257, ranks bundled offline).
import { DataArgumentError, UnknownTokenizerError } from './data-errors.ts'

export interface Tokenizer {
  /** 'byte' or 'gpt2': recorded in run manifests, so two nodes agree on it. */
  readonly name: string
  /** Ids are in [0, vocabSize). */
  readonly vocabSize: number
  /** The end-of-text id, placed between documents in a token stream. */
  readonly eot: number
  encode(text: string): Int32Array
  /** Invalid UTF-8 (a model may emit any bytes) decodes to U+FFFD rather than throwing. */
  decode(ids: ArrayLike<number>): string
}

/**
 * Byte-level tokenizer: each UTF-8 byte is one token, vocab 256. End-of-text is byte 0 (NUL),
 * which text never contains in practice (the dataset reader drops NUL characters from input), so
 * the vocab stays 256 and a corpus fits a Uint8Array. decode(eot) gives '\u0000'.
 */
export class ByteTokenizer implements Tokenizer {
  readonly name = 'byte'
  readonly vocabSize = 256
  readonly eot = 0
  private readonly encoder = new TextEncoder()
  private readonly decoder = new TextDecoder('utf-8')

  encode (text: string): Int32Array {
    return Int32Array.from(this.encoder.encode(text))
  }

  decode (ids: ArrayLike<number>): string {
    const bytes = new Uint8Array(ids.length)
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]
      if (!Number.isInteger(id) || id < 0 || id > 255) throw new DataArgumentError(`byte tokenizer: id ${id} at ${i} is outside [0, 256)`)
      bytes[i] = id
    }
    return this.decoder.decode(bytes)
  }
}

interface BpeApi {
  encode(text: string, opts?: { disallowedSpecial?: Set<string> }): number[]
  decode(ids: Iterable<number>): string
  vocabularySize: number
}

/**
 * GPT-2 BPE (r50k_base): vocab 50257, eot 50256 ('<|endoftext|>'). Text that spells
 * '<|endoftext|>' is encoded as ordinary text, never as the special token: only the pipeline
 * places eot.
 */
export class Gpt2Tokenizer implements Tokenizer {
  readonly name = 'gpt2'
  readonly vocabSize: number
  readonly eot = 50256
  private readonly noSpecial = new Set<string>()

  constructor (private readonly bpe: BpeApi) {
    this.vocabSize = bpe.vocabularySize
  }

  encode (text: string): Int32Array {
    return Int32Array.from(this.bpe.encode(text, { disallowedSpecial: this.noSpecial }))
  }

  decode (ids: ArrayLike<number>): string {
    const list = Array.from(ids)
    const bad = list.findIndex(id => !Number.isInteger(id) || id < 0 || id >= this.vocabSize)
    if (bad >= 0) throw new DataArgumentError(`gpt2 tokenizer: id ${list[bad]} at ${bad} is outside [0, ${this.vocabSize})`)
    return this.bpe.decode(list)
  }
}

export const TOKENIZER_NAMES = ['byte', 'gpt2'] as const
export type TokenizerName = typeof TOKENIZER_NAMES[number]

/** A tokenizer by name. 'gpt2' imports its ~1 MB rank table on first use. */
export async function createTokenizer (name: string = 'byte'): Promise<Tokenizer> {
  switch (name) {
    case 'byte': return new ByteTokenizer()
    case 'gpt2': {
      const bpe = await import('gpt-tokenizer/encoding/r50k_base')
      return new Gpt2Tokenizer(bpe.default)
    }
    default: throw new UnknownTokenizerError(name, TOKENIZER_NAMES)
  }
}
