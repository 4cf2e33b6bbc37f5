// tokenizer.json for GPT-2: the one-file "fast" tokenizer that `tokenizers`, transformers'
// AutoTokenizer / GPT2TokenizerFast and tokenizers.js load first. The same facts as GPT-2's
// published file: a byte-level BPE model (vocab and merges of gpt2-tokenizer-files.ts), no
// normalizer, the ByteLevel pre-tokenizer (GPT-2's regex, no prefix space), ByteLevel decoder and
// post-processor, and <|endoftext|> = 50256 as a special added token.
// Choices for the widest set of readers:
//   merges are "a b" strings (the format every `tokenizers` version reads; arrays of pairs only
//     since 0.20). GPT-2's tokens never hold a plain space (byte 0x20 is spelled U+0120), so the
//     split is unambiguous.
//   vocab and merges are each written on one line, vocab in id order: a JS object would move
//     integer-like tokens ("0", "1", ...) first. Built as a string, so the bytes are the same for
//     the same vocabulary on every run.
import { GPT2_EOT_ID, GPT2_EOT_TOKEN, vocabJson, type Gpt2Vocabulary } from './gpt2-tokenizer-files.ts'

/** ByteLevel settings as `tokenizers` serializes them (use_regex: GPT-2's split pattern). */
const byteLevel = (addPrefixSpace: boolean, trimOffsets: boolean): Record<string, unknown> =>
  ({ type: 'ByteLevel', add_prefix_space: addPrefixSpace, trim_offsets: trimOffsets, use_regex: true })

const VOCAB = '\u0000vocab\u0000'
const MERGES = '\u0000merges\u0000'

/** Everything of tokenizer.json but the vocabulary and merges (placeholders, replaced when written). */
function skeleton (): Record<string, unknown> {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      { id: GPT2_EOT_ID, content: GPT2_EOT_TOKEN, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }
    ],
    normalizer: null,
    // encoding: no space is prepended to the text (GPT-2 encodes "Hello" and " Hello" differently)
    pre_tokenizer: byteLevel(false, true),
    // the post-processor adds no tokens; its flags only shape offsets, as in GPT-2's file
    post_processor: byteLevel(true, false),
    decoder: byteLevel(true, true),
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null, // byte-level: every byte is a token, nothing is unknown
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab: VOCAB,
      merges: MERGES
    }
  }
}
/** tokenizer.json's text for GPT-2's vocabulary (tokens by id, <|endoftext|> last; merges in rank order). */
export function gpt2TokenizerJson ({ tokens, merges }: Gpt2Vocabulary): string {
  const mergeList = '[' + merges.map(([a, b]) => JSON.stringify(`${a} ${b}`)).join(', ') + ']'
  const parts: Record<string, string> = { [JSON.stringify(VOCAB)]: vocabJson(tokens).trimEnd(), [JSON.stringify(MERGES)]: mergeList }
  // the placeholders are replaced in the skeleton's text only (the inserted text is not searched again)
  return JSON.stringify(skeleton(), null, 2).replace(/"\\u0000(vocab|merges)\\u0000"/g, m => parts[m]) + '\n'
}
