// The CPU backend's Llama SIMD kernels ship as embedded bytes (plugins/backend-cpu/llama-wasm-bin.ts)
// generated from wasm/llama.wat: the bytes must be that file's assembly, or an edit of the .wat would
// silently not run. (The kernels' results are checked by the compliance suite, test/backend-cpu.test.ts.)
import assert from 'node:assert/strict'
import { assembleLlamaWat } from '../plugins/backend-cpu/llama-wasm.ts'
import { LLAMA_WASM_BASE64 } from '../plugins/backend-cpu/llama-wasm-bin.ts'

describe('backend-cpu: the Llama WASM kernels', function () {
  this.timeout(60000)

  it('the embedded module is the assembly of wasm/llama.wat', async function () {
    const bytes = Buffer.from(await assembleLlamaWat())
    assert.ok(bytes.length > 8)
    assert.ok(bytes.equals(Buffer.from(LLAMA_WASM_BASE64, 'base64')),
      'llama-wasm-bin.ts is stale: run `node --import tsx plugins/backend-cpu/llama-wasm.ts --emit`')
  })
})
