// `start` configuration: flags > LAYERSWARM_* env > config file > defaults; paths in a config file are
// relative to it; every bad value is a ConfigError naming its source.
import assert from 'node:assert/strict'
import { writeFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { homedir } from 'node:os'
import { resolveStartConfig } from '../cli/config.ts'
import { ConfigError } from '../core/errors.ts'
import { removeDirs, tempDir } from './node-helpers.ts'

describe('cli: start configuration', () => {
  const dirs: string[] = []
  let dir: string
  let configFile: string
  before(async () => {
    dir = await tempDir('lsw-cfg-'); dirs.push(dir)
    await mkdir(join(dir, 'conf'))
    configFile = join(dir, 'conf', 'node.json')
    await writeFile(configFile, JSON.stringify({
      network: './mynet.json',
      listen: ['/ip4/0.0.0.0/tcp/4001'],
      bootstrap: ['/ip4/10.0.0.1/tcp/4001'],
      dataDir: './data',
      plugins: { 'backend-cpu': { threads: 2 }, './my-plugin.js': {} },
      pluginOptions: { 'my-plugin': { level: 3 } },
      logLevel: 'debug',
      bootstrapRetry: { initialDelayMs: 100 },
      runtime: { stage: 1 }
    }))
  })
  after(async () => { await removeDirs(dirs) })

  it('uses defaults with no input', async () => {
    const c = await resolveStartConfig({}, {}, dir)
    assert.equal(c.logLevel, 'info')
    assert.equal(c.logFormat, 'human')
    assert.equal(c.node.network, 'local')
    assert.equal(c.node.dataDir, undefined, 'createNode defaults it to ~/.layerswarm')
    assert.equal(c.node.plugins, undefined, 'createNode picks the default plugins')
    assert.equal(c.node.bootstrapNode, false)
  })

  it('reads a config file, resolving its paths against the file\'s directory', async () => {
    const c = await resolveStartConfig({ config: configFile }, {}, dir)
    assert.equal(c.configFile, configFile)
    assert.equal(c.node.network, join(dir, 'conf', 'mynet.json'))
    assert.equal(c.node.dataDir, join(dir, 'conf', 'data'))
    assert.deepEqual(c.node.listen, ['/ip4/0.0.0.0/tcp/4001'])
    assert.deepEqual(c.node.plugins, ['backend-cpu', join(dir, 'conf', 'my-plugin.js')])
    assert.deepEqual(c.node.pluginOptions, { 'backend-cpu': { threads: 2 }, [join(dir, 'conf', 'my-plugin.js')]: {}, 'my-plugin': { level: 3 } })
    assert.equal(c.logLevel, 'debug')
    assert.deepEqual(c.node.bootstrapRetry, { initialDelayMs: 100 })
    assert.deepEqual(c.node.runtime, { stage: 1 })
  })

  it('lets env override the config file and flags override env; lists replace, never merge', async () => {
    const env = {
      LAYERSWARM_CONFIG: configFile,
      LAYERSWARM_LISTEN: '/ip4/127.0.0.1/tcp/5001, /ip4/127.0.0.1/tcp/5002/ws',
      LAYERSWARM_DATA_DIR: '~/lsw-env',
      LAYERSWARM_LOG_LEVEL: 'warn',
      LAYERSWARM_BOOTSTRAP_NODE: 'true',
      LAYERSWARM_PLUGINS: ''
    }
    const e = await resolveStartConfig({}, env, dir)
    assert.deepEqual(e.node.listen, ['/ip4/127.0.0.1/tcp/5001', '/ip4/127.0.0.1/tcp/5002/ws'])
    assert.equal(e.node.dataDir, join(homedir(), 'lsw-env'))
    assert.equal(e.logLevel, 'warn')
    assert.equal(e.node.bootstrapNode, true)
    assert.deepEqual(e.node.plugins, [], 'set-but-empty LAYERSWARM_PLUGINS means no plugins')
    assert.deepEqual(e.node.bootstrap, ['/ip4/10.0.0.1/tcp/4001'], 'unset in env: from the config file')

    const f = await resolveStartConfig({ listen: ['/ip4/127.0.0.1/tcp/6001'], dataDir: 'flagdir', logLevel: 'error', plugins: 'a,./b.js' }, env, dir)
    assert.deepEqual(f.node.listen, ['/ip4/127.0.0.1/tcp/6001'])
    assert.equal(f.node.dataDir, join(dir, 'flagdir'))
    assert.equal(f.logLevel, 'error')
    assert.deepEqual(f.node.plugins, ['a', join(dir, 'b.js')])
  })

  const bad = async (flags: Record<string, unknown>, env: Record<string, string>, pattern: RegExp): Promise<void> => {
    await assert.rejects(resolveStartConfig(flags, env, dir), (err: any) => {
      assert.ok(err instanceof ConfigError, `${err?.name}: ${err?.message}`)
      assert.match(err.message, pattern)
      return true
    })
  }

  it('--allow-software-gpu and --gpu-f16 set the WebGPU plugin options, over the config file\'s', async () => {
    const c = await resolveStartConfig({ config: configFile, allowSoftwareGpu: true, gpuF16: true }, {}, dir)
    assert.deepEqual(c.node.pluginOptions?.['backend-webgpu'], { allowSoftwareGpu: true, f16: true })
    assert.deepEqual(c.node.pluginOptions?.['my-plugin'], { level: 3 }, 'other plugins keep their options')
    const none = await resolveStartConfig({ config: configFile }, {}, dir)
    assert.equal(none.node.pluginOptions?.['backend-webgpu'], undefined)
  })

  it('rejects bad values with ConfigErrors that name the source', async () => {
    const file = async (name: string, body: string): Promise<string> => { const f = join(dir, name); await writeFile(f, body); return f }
    await bad({ config: join(dir, 'missing.json') }, {}, /config file .*missing\.json cannot be read \(ENOENT\); check the --config path/)
    await bad({ config: await file('arr.json', '[1]') }, {}, /must be a JSON object/)
    await bad({ config: await file('typo.json', '{"listenAddrs": []}') }, {}, /unknown key\(s\) listenAddrs; allowed: network, listen/)
    await bad({ config: await file('listen.json', '{"listen": "/ip4/0.0.0.0/tcp/1"}') }, {}, /"listen" must be an array of strings/)
    await bad({ config: await file('ma.json', '{"bootstrap": ["/ip6/zz/tcp/1"]}') }, {}, /invalid multiaddr "\/ip6\/zz\/tcp\/1" in "bootstrap" of .*ma\.json/)
    await bad({ config: await file('retry.json', '{"bootstrapRetry": {"initialDelayMs": -1}}') }, {}, /"bootstrapRetry\.initialDelayMs" must be a positive number/)
    await bad({}, { LAYERSWARM_BOOTSTRAP_NODE: 'maybe' }, /LAYERSWARM_BOOTSTRAP_NODE=maybe is not a boolean; use true or false/)
    await bad({}, { LAYERSWARM_LOG_FORMAT: 'xml' }, /log format "xml" is not human or json/)
    await bad({ announce: ['/ip4/1.2.3.4/tcp/x'] }, {}, /invalid multiaddr .* in --announce/)
  })

  it('--chain: endpoint, netuid, wallet and hotkey from flags, env or the config file; clear errors', async () => {
    assert.equal((await resolveStartConfig({}, {}, dir)).chain, undefined)
    assert.deepEqual((await resolveStartConfig({ chain: 'ws://127.0.0.1:9944', netuid: '3' }, {}, dir)).chain,
      { endpoint: 'ws://127.0.0.1:9944', netuid: 3, wallet: 'default', hotkey: 'default' })
    const f = join(dir, 'chain.json')
    await writeFile(f, JSON.stringify({ chain: 'wss://example.org:443', netuid: 9, wallet: 'w1', hotkey: 'h1' }))
    assert.deepEqual((await resolveStartConfig({ config: f }, { LAYERSWARM_HOTKEY: 'h2' }, dir)).chain,
      { endpoint: 'wss://example.org:443', netuid: 9, wallet: 'w1', hotkey: 'h2' })
    assert.deepEqual((await resolveStartConfig({ netuid: '4' }, { LAYERSWARM_CHAIN: 'ws://h:1', LAYERSWARM_NETUID: '5' }, dir)).chain,
      { endpoint: 'ws://h:1', netuid: 4, wallet: 'default', hotkey: 'default' })
    await bad({ chain: 'ws://127.0.0.1:9944' }, {}, /--chain needs --netuid N/)
    await bad({ chain: 'http://127.0.0.1:9944', netuid: '1' }, {}, /not a ws:\/\/ or wss:\/\/ URL/)
    await bad({ chain: 'ws://127.0.0.1:9944', netuid: '-1' }, {}, /netuid "-1" is not an integer in 0\.\.65535/)
    await bad({ chain: 'ws://127.0.0.1:9944', netuid: '70000' }, {}, /netuid "70000" is not an integer/)
    await bad({ chain: 'ws://127.0.0.1:9944', netuid: '1', hotkey: '../x' }, {}, /hotkey name "\.\.\/x" must be/)
    await bad({ netuid: '1' }, {}, /--netuid given without --chain/)
    // a hotkey missing from the data dir is the user's to fix (exit 2)
    const { chainOption } = await import('../cli/commands/start.ts')
    await assert.rejects(chainOption({ endpoint: 'ws://h:1', netuid: 1, wallet: 'nowallet', hotkey: 'default' }, dir),
      (err: unknown) => err instanceof ConfigError && /--chain needs hotkey "default" of wallet "nowallet": .*not found/.test(err.message))
  })
})
