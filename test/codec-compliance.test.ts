// Every built-in codec against the codec compliance suite (core/testing/codec-compliance.ts).
import { codecCompliance } from '../core/testing/codec-compliance.ts'
import { bf16Codec, builtinCodecs, builtinHeaderLength, int4BlockCodec, int8BlockCodec, topkCodec } from '../plugins/compression/index.ts'

const headerLength = builtinHeaderLength

for (const codec of builtinCodecs()) {
  codecCompliance(codec.name, () => codec, { headerLength })
}

// Non-default parameters: other block sizes (odd for int8), a large top-k fraction, composites.
codecCompliance('int8-block (block 7)', () => int8BlockCodec({ blockSize: 7 }), { headerLength })
codecCompliance('int8-block (block 256)', () => int8BlockCodec({ blockSize: 256 }), { headerLength })
codecCompliance('int4-block (block 2)', () => int4BlockCodec({ blockSize: 2 }), { headerLength })
codecCompliance('topk (fraction 0.5)', () => topkCodec({ fraction: 0.5 }), { headerLength })
codecCompliance('topk.bf16 (fraction 1)', () => topkCodec({ fraction: 1, values: bf16Codec(), id: 1000 }), { headerLength })
codecCompliance('topk.int4-block', () => topkCodec({ values: int4BlockCodec(), id: 1001 }), { headerLength })
