// Where a training step's time goes, per backend method: `[PRESET=llama-20m B=8 T=128 REPS=2] npx tsx bench/profile-step.ts [threads] [js]`.
// Wraps the CPU backend so every awaited call is timed, runs steps of a preset (default tiny, B=16, T=64; AdamW)
// through core/model, and prints ms per step, calls per step and us per call for each method.
import { createCpuBackend } from '../plugins/backend-cpu/backend.ts'
import { GptModel } from '../core/model/gpt.ts'
import { modelPreset } from '../core/model/config.ts'
import type { ComputeBackend } from '../core/contracts/index.ts'

const threads = Number(process.argv[2] ?? 2)
const raw = await createCpuBackend({ threads, simd: process.argv[3] !== 'js' })
const acc = new Map<string, { ms: number, n: number }>()
const untimed = new Set(['alloc', 'upload', 'free', 'dispose'])
const be = new Proxy(raw, {
  get (target, key) {
    const v = (target as unknown as Record<string | symbol, unknown>)[key]
    if (typeof v !== 'function') return v
    if (untimed.has(String(key))) return v.bind(target)
    return async (...args: unknown[]) => {
      const t0 = performance.now()
      try {
        return await v.apply(target, args)
      } finally {
        const e = acc.get(String(key)) ?? { ms: 0, n: 0 }
        e.ms += performance.now() - t0
        e.n++
        acc.set(String(key), e)
      }
    }
  }
}) as ComputeBackend

const config = modelPreset(process.env.PRESET ?? 'tiny')
const model = new GptModel(be, config, { seed: 1 })
const B = Number(process.env.B ?? 16); const T = Number(process.env.T ?? 64)
const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % config.vocabSize)
const targets = Int32Array.from({ length: B * T }, (_, i) => (i * 104729) % config.vocabSize)
const step = async (): Promise<void> => {
  await model.zeroGrad()
  await model.forward(tokens, B, T, targets)
  await model.backward()
  await model.update({ lr: 1e-3 })
}
for (let i = 0; i < 2; i++) await step()
acc.clear()
const reps = Number(process.env.REPS ?? 5)
const t0 = performance.now()
for (let i = 0; i < reps; i++) await step()
const total = (performance.now() - t0) / reps
console.log(`${raw.info.device}: ${total.toFixed(1)} ms/step, ${(B * T / total * 1000).toFixed(0)} tokens/s`)
for (const [k, v] of [...acc.entries()].sort((a, b) => b[1].ms - a[1].ms)) {
  console.log(`${k.padEnd(22)} ${(v.ms / reps).toFixed(2).padStart(8)} ms/step ${String(v.n / reps).padStart(5)} calls/step ${(v.ms / v.n * 1000).toFixed(0).padStart(7)} us/call`)
}
model.dispose()
await raw.dispose()
