// The CLI's plugin shorthand flags (cli/plugin-flags.ts): --allow-software-gpu and --gpu-f16 become
// backend-webgpu's options for `start`, `train` and `demo` (and the demo's node config files); every
// command that should take them declares them; and the plugin accepts the options they set, so a
// renamed option fails here rather than being silently ignored.
import assert from 'node:assert/strict'
import { Command } from 'commander'
import { flagKey, PLUGIN_SHORTHANDS, pluginShorthandOptions, shorthandOptions, withShorthandOptions } from '../cli/plugin-flags.ts'
import { commands } from '../cli/commands/index.ts'
import { nodeConfig, type DemoSettings } from '../core/demo/swarm-plan.ts'
import { parseWebGpuOptions } from '../plugins/backend-webgpu/index.ts'

describe('CLI plugin shorthand flags', () => {
  it('map the flags given (true only) to their plugin\'s options', () => {
    assert.deepEqual(shorthandOptions({ allowSoftwareGpu: true, gpuF16: true, steps: '3' }), { 'backend-webgpu': { allowSoftwareGpu: true, f16: true } })
    assert.deepEqual(shorthandOptions({ gpuF16: true }), { 'backend-webgpu': { f16: true } })
    assert.deepEqual(shorthandOptions({ allowSoftwareGpu: false, steps: '3' }), {})
    assert.deepEqual(pluginShorthandOptions('backend-webgpu', { allowSoftwareGpu: true }), { allowSoftwareGpu: true })
    assert.deepEqual(pluginShorthandOptions('backend-cpu', { allowSoftwareGpu: true }), {})
  })

  it('go over a config file\'s options of that plugin and leave the others', () => {
    const file = { 'backend-webgpu': { f16: false, powerPreference: 'low-power' }, 'my-plugin': { level: 3 } }
    assert.deepEqual(withShorthandOptions(file, { gpuF16: true }), {
      'backend-webgpu': { f16: true, powerPreference: 'low-power' }, 'my-plugin': { level: 3 }
    })
    assert.equal(withShorthandOptions(file, {}), file)
    assert.equal(withShorthandOptions(undefined, {}), undefined)
  })

  it('are declared by start, train and demo', () => {
    const program = new Command('layerswarm')
    for (const register of commands) register(program)
    for (const name of ['start', 'train', 'demo']) {
      const cmd = program.commands.find(c => c.name() === name)
      assert.ok(cmd !== undefined, name)
      for (const s of PLUGIN_SHORTHANDS) assert.ok(cmd.options.some(o => o.long === s.flag), `${name} lacks ${s.flag}`)
    }
  })

  it('set options the WebGPU plugin accepts', () => {
    const all = shorthandOptions(Object.fromEntries(PLUGIN_SHORTHANDS.map(s => [flagKey(s.flag), true])))
    assert.deepEqual(Object.keys(all), ['backend-webgpu'])
    assert.deepEqual(parseWebGpuOptions(all['backend-webgpu']), all['backend-webgpu'])
  })

  it('reach every demo node through its config file, beside the backend\'s threads', () => {
    const settings = { backend: 'webgpu', threads: 2, pluginOptions: shorthandOptions({ allowSoftwareGpu: true, gpuF16: true }) } as unknown as DemoSettings
    assert.deepEqual(nodeConfig(settings), { pluginOptions: { 'backend-webgpu': { threads: 2, allowSoftwareGpu: true, f16: true } } })
    const cpu = { backend: 'cpu', threads: 2, pluginOptions: {} } as unknown as DemoSettings
    assert.deepEqual(nodeConfig(cpu), { pluginOptions: { 'backend-cpu': { threads: 2 } } })
  })
})
