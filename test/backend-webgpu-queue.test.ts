/// <reference types="@webgpu/types" />
// The WebGPU backend's submission queue (plugins/backend-webgpu/queue.ts) on a stand-in GPUDevice
// whose GPU finishes each submit only when the test says so: when a kernel's promise resolves, and
// the case a real adapter hides in its timing (a call whose dispatches fill one batch and go on in
// the next must wait for that newest batch). Needs no adapter, so it runs on every machine.
import assert from 'node:assert/strict'
import { WebGpuBackend } from '../plugins/backend-webgpu/index.ts'
import type { AdapterSummary } from '../plugins/backend-webgpu/index.ts'
import { SLOTS } from '../plugins/backend-webgpu/queue.ts'

/** A GPUDevice that records nothing but submits; the GPU finishes submit i when finish(i) is called. */
function standInDevice (): { device: GPUDevice, submits: () => number, finish: (i: number) => void } {
  const done: Array<() => void> = []
  const buffer = ({ size }: { size: number }): object => ({
    size, destroy () {}, unmap () {}, mapAsync: async () => {}, getMappedRange: () => new ArrayBuffer(size)
  })
  const pass = { setPipeline () {}, setBindGroup () {}, dispatchWorkgroups () {}, end () {} }
  const device = {
    limits: { maxComputeWorkgroupsPerDimension: 65535, maxStorageBufferBindingSize: 1 << 27, maxBufferSize: 1 << 28 },
    features: new Set<string>(),
    lost: new Promise(() => {}),
    onuncapturederror: null,
    createBuffer: buffer,
    createCommandEncoder: () => ({ beginComputePass: () => pass, copyBufferToBuffer () {}, clearBuffer () {}, finish: () => ({}) }),
    createBindGroup: () => ({}),
    createBindGroupLayout: () => ({}),
    createShaderModule: () => ({}),
    createComputePipeline: () => ({}),
    createPipelineLayout: () => ({}),
    pushErrorScope () {},
    popErrorScope: async () => null,
    queue: {
      writeBuffer () {},
      submit () {},
      onSubmittedWorkDone: async () => { await new Promise<void>(resolve => done.push(resolve)) }
    },
    destroy () {}
  }
  return { device: device as unknown as GPUDevice, submits: () => done.length, finish: i => { done[i]() } }
}

const ADAPTER: AdapterSummary = { vendor: 'test', architecture: 'stand-in', device: '', description: '', software: true, features: [], limits: {} }

/** Lets pending promise callbacks and the queue's end-of-microtask flush run. */
async function settle (): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>(resolve => setImmediate(resolve))
}

describe('webgpu submission queue (stand-in device)', () => {
  it('kernels called back to back share one submit; each resolves once the GPU has finished it', async () => {
    const gpu = standInDevice()
    const be = new WebGpuBackend(gpu.device, ADAPTER)
    const t = be.alloc([8])
    let resolved = 0
    const calls = [be.scale(t, 2), be.scale(t, 3), be.fill(t, 1)].map(async p => { await p; resolved++ })
    await settle()
    assert.equal(gpu.submits(), 1)
    assert.equal(resolved, 0, 'no kernel resolves before the GPU finished its batch')
    gpu.finish(0)
    await Promise.all(calls)
    assert.equal(resolved, 3)
  })

  it('a call whose dispatches spill over into the next batch awaits that newest batch', async () => {
    const gpu = standInDevice()
    const be = new WebGpuBackend(gpu.device, ADAPTER)
    const B = 1; const T = 2; const C = 4; const NH = 2
    const out = be.alloc([B, T, C]); const preatt = be.alloc([B, NH, T, T]); const att = be.alloc([B, NH, T, T]); const qkv = be.alloc([B, T, 3 * C])
    const t = be.alloc([8])
    // one batch holds SLOTS dispatches: fill all but one, so attention's 3 dispatches go 1 + 2
    const fillers = Array.from({ length: SLOTS - 1 }, async () => { await be.scale(t, 1) })
    let attentionDone = false
    const attention = be.attentionForward(out, preatt, att, qkv, NH).then(() => { attentionDone = true })
    await settle()
    assert.equal(gpu.submits(), 2, 'the full batch was submitted, then the rest of the call')
    gpu.finish(0)
    await Promise.all(fillers)
    await settle()
    assert.equal(attentionDone, false, 'attention resolved before its last dispatches ran')
    gpu.finish(1)
    await attention
  })
})
