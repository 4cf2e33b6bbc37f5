// `layerswarm export --format hf` with the GPT-2 tokenizer files (core/export/gpt2-tokenizer-files.ts).
// The files' shapes (50257 vocab entries, ids 0..50256 once each, 50000 merges where merge i makes
// token 256 + i), then an independent check that they reproduce core/data/tokenizer.ts: a small
// Python BPE written below (GPT-2's byte-to-unicode table, its pre-tokenizer pattern scanned by
// hand with unicodedata, the merge loop of GPT-2's encoder) reads vocab.json + merges.txt and must
// give the same ids on paragraphs of the bundled corpus and on tricky strings. It needs python3 (no
// transformers); that check skips, saying so, without it. Also: the tokenizer a checkpoint records
// or its vocabulary implies, --tokenizer none / byte (no files, said on stdout), and bad input (exit 2).
// tokenizer.json (core/export/gpt2-tokenizer-json.ts) is read by another implementation,
// @huggingface/tokenizers (Hugging Face's pure-JS tokenizers.js), which must encode the same texts to
// our ids (a spelled <|endoftext|> excepted: it is the special token there) and decode them back.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { Tokenizer } from '@huggingface/tokenizers'
import { createTokenizer } from '../core/data/tokenizer.ts'
import { validateModelConfig, type ModelConfig } from '../core/model/config.ts'
import { checkpointSpecs, saveCheckpoint } from '../core/train/checkpoint.ts'
import { assertBadInputExits2, runMain } from './cli-main-helpers.ts'
import { ROOT, runCli } from './cli-helpers.ts'

const PYTHON = 'python3'

/** GPT-2's BPE over vocab.json + merges.txt, written from the published algorithm, not from our code. */
const BPE_PY = String.raw`
import json, sys, unicodedata
d, texts_path = sys.argv[1], sys.argv[2]
vocab = json.load(open(d + '/vocab.json', encoding='utf-8'))
lines = open(d + '/merges.txt', encoding='utf-8').read().split('\n')
assert lines[0] == '#version: 0.2', lines[0]
ranks = {tuple(l.split(' ')): i for i, l in enumerate(x for x in lines[1:] if x)}

def bytes_to_unicode():
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('\xa1'), ord('\xac') + 1)) + list(range(ord('\xae'), ord('\xff') + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))
byte_encoder = bytes_to_unicode()

# the pattern 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ with
# ECMAScript's \s (the tokenizer under test is JavaScript's), scanned by hand
def is_space(c): return c in '\t\n\v\f\r\u2028\u2029\ufeff' or unicodedata.category(c) == 'Zs'
def is_letter(c): return unicodedata.category(c).startswith('L')
def is_number(c): return unicodedata.category(c).startswith('N')
def is_other(c): return not (is_space(c) or is_letter(c) or is_number(c))
CONTRACTIONS = ['s', 't', 're', 've', 'm', 'll', 'd']

def pretokenize(text):
    out, i, n = [], 0, len(text)
    def run(j, pred):
        while j < n and pred(text[j]): j += 1
        return j
    while i < n:
        if text[i] == "'":
            c = next((c for c in CONTRACTIONS if text.startswith(c, i + 1)), None)
            if c is not None:
                out.append(text[i:i + 1 + len(c)]); i += 1 + len(c); continue
        end = None
        for pred in (is_letter, is_number, is_other):
            if text[i] == ' ' and i + 1 < n and pred(text[i + 1]): end = run(i + 1, pred)
            elif pred(text[i]): end = run(i, pred)
            if end is not None: break
        if end is None:
            k = run(i, is_space)
            end = k if k == n or k - i == 1 else k - 1  # \s+(?!\S) leaves the last space to the next word
        out.append(text[i:end]); i = end
    return out

def bpe(word):
    parts = list(word)
    while len(parts) > 1:
        pairs = set(zip(parts, parts[1:]))
        best = min(pairs, key=lambda p: ranks.get(p, float('inf')))
        if best not in ranks: break
        merged, j = [], 0
        while j < len(parts):
            if j + 1 < len(parts) and (parts[j], parts[j + 1]) == best:
                merged.append(parts[j] + parts[j + 1]); j += 2
            else:
                merged.append(parts[j]); j += 1
        parts = merged
    return parts

def encode(text):
    ids = []
    for piece in pretokenize(text):
        ids.extend(vocab[t] for t in bpe(''.join(byte_encoder[b] for b in piece.encode('utf-8'))))
    return ids

texts = json.load(open(texts_path, encoding='utf-8'))
print(json.dumps([encode(t) for t in texts]))
`

const TRICKY = [
  'naïve café, Ünïcödé — “curly quotes” … «guillemets» ß ﬁ ǅ',
  'e\u0301 decomposed, Ω vs \u2126, Ⅻ roman, ½ ¾ ² ³ superscripts',
  '日本語のテキストと中文文本，한국어 텍스트 and עברית ועربي',
  'emoji 👍 👍🏽 family 👨‍👩‍👧 flag 🇫🇷 🤖🧠 ❤️ ✨✨✨',
  'a  b   c\t\td\n\n\ne  f \n g\r\n\u00a0nbsp\u3000ideographic \u2028line',
  'trailing spaces   ',
  '   leading spaces',
  '1234567890 3.14159 -42 1,000,000 0x1F ２０２４ ٣٤٥ ⅷ',
  "I'm can't we'll they've she'd it's you're 'S 'LL O'Neil ''s rock'n'roll",
  'text that spells <|endoftext|> is ordinary text',
  'control \u0000\u0001\u001f\u007f bytes, tabs\tand $%^&*()_+{}|:"<>?~`!@#',
  'https://example.com/path?q=1&r=two#frag user@example.org C:\\dir\\file.txt',
  'def f(x):\n    return x ** 2  # comment\n\n\tif x: pass\n',
  'Ġ Ċ ĠĠ ł byte-to-unicode lookalikes',
  ''
]

/** Bundled-corpus text: its first 6 KB and four 2,500-character passages. */
async function corpusTexts (): Promise<string[]> {
  const kjv = gunzipSync(await readFile(join(ROOT, 'corpus', 'kjv.txt.gz'))).toString('utf8')
  return [kjv.slice(0, 6000), ...[0.3, 0.62, 0.97].map(f => kjv.slice(Math.floor(kjv.length * f), Math.floor(kjv.length * f) + 2500))]
}

const EOT = '<|endoftext|>'
const TOKENIZER_FILES = ['tokenizer.json', 'vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json']

/** A gpt2-architecture checkpoint (zeros: the export does not look at values). */
async function writeCheckpoint (path: string, cfg: ModelConfig, info?: Record<string, unknown>): Promise<void> {
  const layout = { stages: 1, bottleneck: 0, stage: null }
  const params = new Map<string, Float32Array>()
  for (const s of checkpointSpecs(cfg, layout)) params.set(s.name, new Float32Array(s.shape.reduce((a, b) => a * b, 1)))
  await saveCheckpoint(path, { config: cfg, layout, params, ...(info != null ? { info } : {}) })
}

describe('cli: export --format hf, GPT-2 tokenizer files', function () {
  this.timeout(240_000)
  let dir: string
  let gpt2Ckpt: string
  let hf: string
  const cfg = validateModelConfig({ vocabSize: 50257, blockSize: 8, nLayer: 1, nHead: 2, dModel: 8 })
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ls-export-tok-'))
    gpt2Ckpt = join(dir, 'gpt2.safetensors')
    await writeCheckpoint(gpt2Ckpt, cfg, { tokenizer: 'gpt2' })
    hf = join(dir, 'gpt2-hf')
    const r = await runCli(['export', '--checkpoint', gpt2Ckpt, '--format', 'hf', '--out', hf], { timeoutMs: 120_000 })
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /exported GPT2LMHeadModel \(\d+ parameters, 17 tensors\) to .*: config\.json, model\.safetensors, generation_config\.json, tokenizer\.json, vocab\.json, merges\.txt, tokenizer_config\.json, special_tokens_map\.json\n/)
    assert.match(r.stdout, /tokenizer gpt2: GPT-2 tokenizer files written/)
  })
  after(async () => {
    if (dir != null) await rm(dir, { recursive: true, force: true })
  })

  it('vocab.json has ids 0..50256 once each, merges.txt 50000 merges in rank order, configs name <|endoftext|> = 50256', async () => {
    assert.deepEqual((await readdir(hf)).sort(), ['config.json', 'generation_config.json', 'model.safetensors', ...TOKENIZER_FILES].sort())
    const vocabText = await readFile(join(hf, 'vocab.json'), 'utf8')
    const vocab = JSON.parse(vocabText) as Record<string, number>
    const entries = Object.entries(vocab)
    assert.equal(entries.length, 50257)
    const ids = entries.map(([, id]) => id).sort((a, b) => a - b)
    assert.ok(ids.every((id, i) => id === i), 'ids are 0..50256, each once')
    assert.equal(vocab['<|endoftext|>'], 50256)
    assert.equal(vocab['!'], 0)
    assert.equal(vocab['Ġthe'], 262, 'GPT-2\'s " the"')
    assert.equal(vocab['Ġ'], 220, 'space is U+0120')
    assert.equal(vocab['Ċ'], 198, 'newline is U+010A')
    assert.ok(vocabText.startsWith('{"!": 0, "\\"": 1, "#": 2'), 'written in id order')

    const lines = (await readFile(join(hf, 'merges.txt'), 'utf8')).split('\n')
    assert.equal(lines[0], '#version: 0.2')
    assert.equal(lines.at(-1), '', 'ends with a newline')
    const merges = lines.slice(1, -1)
    assert.equal(merges.length, 50000)
    assert.deepEqual(merges.slice(0, 4), ['Ġ t', 'Ġ a', 'h e', 'i n'])
    merges.forEach((m, i) => {
      const parts = m.split(' ')
      assert.equal(parts.length, 2, `merge ${i}: ${m}`)
      const [a, b] = parts
      assert.ok(vocab[a] < 256 + i && vocab[b] < 256 + i, `merge ${i} (${m}) joins earlier tokens`)
      assert.equal(vocab[a + b], 256 + i, `merge ${i} (${m}) makes token ${256 + i}`)
    })

    const config = JSON.parse(await readFile(join(hf, 'config.json'), 'utf8'))
    assert.deepEqual([config.vocab_size, config.bos_token_id, config.eos_token_id], [50257, 50256, 50256])
    assert.deepEqual(JSON.parse(await readFile(join(hf, 'generation_config.json'), 'utf8')), { bos_token_id: 50256, eos_token_id: 50256 })
    const tc = JSON.parse(await readFile(join(hf, 'tokenizer_config.json'), 'utf8'))
    assert.equal(tc.tokenizer_class, 'GPT2Tokenizer')
    assert.equal(tc.model_max_length, 8, 'the model\'s context')
    assert.equal(tc.add_prefix_space, false)
    assert.deepEqual([tc.bos_token, tc.eos_token, tc.unk_token], ['<|endoftext|>', '<|endoftext|>', '<|endoftext|>'])
    assert.equal(tc.added_tokens_decoder['50256'].content, '<|endoftext|>')
    assert.equal(tc.added_tokens_decoder['50256'].special, true)
    assert.deepEqual(JSON.parse(await readFile(join(hf, 'special_tokens_map.json'), 'utf8')),
      { bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>' })
  })

  it('an independent Python BPE over vocab.json + merges.txt gives core/data/tokenizer.ts\'s ids (corpus paragraphs, unicode, spaces, digits, emoji)', async function () {
    const probe = spawnSync(PYTHON, ['-c', 'import json, unicodedata'], { stdio: 'ignore', timeout: 60_000 })
    if (probe.error != null || probe.status !== 0) { this.skip(); return } // no python3 here: the shape checks above ran
    const paragraphs = await corpusTexts()
    const texts = [...paragraphs, ...TRICKY]
    const textsPath = join(dir, 'texts.json')
    await writeFile(textsPath, JSON.stringify(texts))
    const script = join(dir, 'bpe.py')
    await writeFile(script, BPE_PY)
    const py = spawnSync(PYTHON, [script, hf, textsPath], { encoding: 'utf8', timeout: 180_000, maxBuffer: 64 << 20 })
    assert.equal(py.status, 0, py.stderr)
    const theirs = JSON.parse(py.stdout) as number[][]
    const tok = await createTokenizer('gpt2')
    let total = 0
    texts.forEach((t, i) => {
      const ours = [...tok.encode(t)]
      assert.deepEqual(theirs[i], ours, `text ${i}: ${JSON.stringify(t.slice(0, 60))}`)
      total += ours.length
    })
    assert.ok(total > 2000, `${total} tokens compared`)
    assert.ok(theirs[TRICKY.indexOf('text that spells <|endoftext|> is ordinary text') + paragraphs.length].every(id => id !== 50256), 'spelled end-of-text stays text')
  })

  it('tokenizer.json holds the same vocabulary and merges, and @huggingface/tokenizers reading it gives core/data/tokenizer.ts\'s ids and decodes them back', async () => {
    const text = await readFile(join(hf, 'tokenizer.json'), 'utf8')
    const json = JSON.parse(text)
    assert.ok(text.includes('"vocab": {"!": 0, "\\"": 1, "#": 2'), 'vocab written in id order')
    assert.deepEqual(json.model.vocab, JSON.parse(await readFile(join(hf, 'vocab.json'), 'utf8')))
    assert.deepEqual(json.model.merges, (await readFile(join(hf, 'merges.txt'), 'utf8')).split('\n').slice(1, -1))
    assert.equal(json.model.type, 'BPE')
    assert.equal(json.normalizer, null)
    assert.deepEqual(json.pre_tokenizer, { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true })
    assert.deepEqual([json.post_processor.type, json.decoder.type], ['ByteLevel', 'ByteLevel'])
    assert.deepEqual(json.added_tokens, [{ id: 50256, content: EOT, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }])

    const theirs = new Tokenizer(json, JSON.parse(await readFile(join(hf, 'tokenizer_config.json'), 'utf8')))
    const ours = await createTokenizer('gpt2')
    const texts = [...await corpusTexts(), ...TRICKY]
    let total = 0
    for (const t of texts) {
      const label = JSON.stringify(t.slice(0, 60))
      // tokenizers match a spelled <|endoftext|> as the special token; ours keeps it text
      const expected = t.split(EOT).map(part => [...ours.encode(part)]).reduce((acc, ids) => [...acc, 50256, ...ids])
      const ids = theirs.encode(t, { add_special_tokens: false }).ids
      assert.deepEqual(ids, expected, label)
      assert.deepEqual(theirs.encode(t).ids, expected, `${label}: the post-processor adds no tokens`)
      total += ids.length
      if (ids.length === 0) continue // tokenizers.js refuses to decode nothing
      assert.equal(theirs.decode(ids), t, `${label}: decodes back`)
      assert.equal(theirs.decode([...ours.encode(t)]), t, `${label}: our ids decode back`)
    }
    assert.ok(total > 3000, `${total} tokens compared`)
    const spelled = `a ${EOT} b`
    assert.deepEqual(theirs.encode(spelled).ids, [...ours.encode('a '), 50256, ...ours.encode(' b')])
    assert.equal(theirs.decode(theirs.encode(spelled).ids, { skip_special_tokens: true }), 'a  b')
  })

  it('the tokenizer comes from the checkpoint, else its vocabulary; --tokenizer none and byte write no tokenizer files and say so', async () => {
    const unrecorded = join(dir, 'unrecorded.safetensors')
    await writeCheckpoint(unrecorded, cfg)
    const byVocab = await runMain(['export', '--checkpoint', unrecorded, '--out', join(dir, 'by-vocab')])
    assert.equal(byVocab.code, 0, byVocab.stderr)
    assert.match(byVocab.stdout, /tokenizer gpt2: /)
    assert.equal((await readdir(join(dir, 'by-vocab'))).length, 8)
    for (const name of TOKENIZER_FILES) { // a second export (in this process, the first was a CLI process): the same bytes
      assert.ok((await readFile(join(dir, 'by-vocab', name))).equals(await readFile(join(hf, name))), name)
    }

    const none = await runMain(['export', '--checkpoint', gpt2Ckpt, '--tokenizer', 'none', '--out', join(dir, 'none')])
    assert.equal(none.code, 0, none.stderr)
    assert.match(none.stdout, /: config\.json, model\.safetensors\ntokenizer none: no tokenizer files\n/)
    assert.deepEqual((await readdir(join(dir, 'none'))).sort(), ['config.json', 'model.safetensors'])
    assert.equal(JSON.parse(await readFile(join(dir, 'none', 'config.json'), 'utf8')).eos_token_id, undefined)

    const byteCkpt = join(dir, 'byte.safetensors')
    await writeCheckpoint(byteCkpt, validateModelConfig({ vocabSize: 256, blockSize: 8, nLayer: 1, nHead: 2, dModel: 8 }), { tokenizer: 'byte' })
    const byte = await runMain(['export', '--checkpoint', byteCkpt, '--out', join(dir, 'byte')])
    assert.equal(byte.code, 0, byte.stderr)
    assert.match(byte.stdout, /tokenizer byte: no tokenizer files \(transformers has no byte-level tokenizer with our ids/)
    assert.deepEqual((await readdir(join(dir, 'byte'))).sort(), ['config.json', 'generation_config.json', 'model.safetensors'])
    assert.equal(JSON.parse(await readFile(join(dir, 'byte', 'config.json'), 'utf8')).eos_token_id, 0)
    assert.deepEqual(JSON.parse(await readFile(join(dir, 'byte', 'generation_config.json'), 'utf8')), { bos_token_id: 0, eos_token_id: 0 })
  })

  it('bad input exits 2 with a clear message and writes nothing', async () => {
    const small = join(dir, 'small.safetensors')
    await writeCheckpoint(small, validateModelConfig({ vocabSize: 40, blockSize: 8, nLayer: 1, nHead: 2, dModel: 8 }), { tokenizer: 'gpt2' })
    const fresh = join(dir, 'never-written')
    const cases: Array<[string[], RegExp]> = [
      [['--checkpoint', gpt2Ckpt, '--tokenizer', 'bpe', '--out', fresh], /--tokenizer bpe is not one of gpt2, byte, none/],
      [['--checkpoint', join(dir, 'missing.safetensors'), '--tokenizer', 'gpt2', '--out', fresh], /--checkpoint .*missing\.safetensors does not exist/],
      [['--checkpoint', small, '--out', fresh], /the gpt2 tokenizer's ids reach 50256 but the model's vocabulary is 40 \(the checkpoint records tokenizer gpt2\); give --tokenizer byte or none/],
      [['--checkpoint', small, '--tokenizer', 'gpt2', '--out', fresh], /the gpt2 tokenizer's ids reach 50256 but the model's vocabulary is 40; give/],
      [['--checkpoint', gpt2Ckpt, '--out', hf], /--out .*gpt2-hf is not empty/]
    ]
    await assertBadInputExits2('export', cases, 120_000)
    await assert.rejects(readdir(fresh), /ENOENT/)
    assert.equal((await readdir(hf)).length, 8, 'the earlier export is untouched')
  })
})
