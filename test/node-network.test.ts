// Named networks and private swarms: profile validation (bad JSON, bad multiaddr, bad key, unknown
// fields) and a pre-shared key that keeps outsiders out.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  createNode, loadNetworkProfile, generateSwarmKey, parseSwarmKey, ConfigError, NetworkProfileError,
  InvalidMultiaddrError, SwarmKeyError, type LayerswarmNode
} from '../core/index.ts'
import { backoffDelay } from '../core/node/bootstrap-dialer.ts'
import { nodeSuite, removeDirs, tempDir } from './node-helpers.ts'
import { waitFor } from './wait-helpers.ts'

describe('node: network profiles', function () {
  const dirs: string[] = []
  let dir: string
  before(async () => { dir = await tempDir(); dirs.push(dir) })
  after(async () => { await removeDirs(dirs) })

  const profile = async (name: string, body: string): Promise<string> => {
    const file = join(dir, name)
    await writeFile(file, body)
    return file
  }

  it('ships local and testnet', async () => {
    const local = await loadNetworkProfile('local')
    assert.equal(local.name, 'local')
    assert.equal(local.protocolPrefix, '/layerswarm/local')
    assert.equal(local.lan, true)
    assert.equal(local.psk, undefined)
    const testnet = await loadNetworkProfile('testnet')
    assert.equal(testnet.protocolPrefix, '/layerswarm/testnet')
    assert.equal(testnet.lan, false)
  })

  it('loads a profile file with a psk path relative to it, and defaults the prefix from the name', async () => {
    await writeFile(join(dir, 'swarm.key'), generateSwarmKey())
    const file = await profile('mynet.json', JSON.stringify({
      name: 'mynet', bootstrap: ['/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA'], psk: './swarm.key'
    }))
    const p = await loadNetworkProfile(file)
    assert.equal(p.protocolPrefix, '/layerswarm/mynet')
    assert.equal(p.bootstrap.length, 1)
    assert.ok(p.psk instanceof Uint8Array && p.psk.length > 64)
  })

  const rejects = async (file: string, cls: new (...a: any[]) => Error, pattern: RegExp): Promise<void> => {
    await assert.rejects(loadNetworkProfile(file), (err: any) => {
      assert.ok(err instanceof cls, `expected ${cls.name}, got ${err?.name}: ${err?.message}`)
      assert.ok(err instanceof ConfigError, 'user input errors are ConfigErrors (exit 2)')
      assert.match(err.message, pattern)
      return true
    })
  }

  it('rejects an unknown network name, bad JSON, bad fields, a bad multiaddr and a bad key', async () => {
    await rejects('nosuchnet', NetworkProfileError, /no such network: use local or testnet, or the path of a profile JSON file/)
    await rejects(await profile('bad.json', '{"name": "x",'), NetworkProfileError, /bad\.json: is not valid JSON .*fix the syntax/)
    await rejects(await profile('arr.json', '[]'), NetworkProfileError, /must be a JSON object/)
    await rejects(await profile('noname.json', '{}'), NetworkProfileError, /"name" must be a lowercase name/)
    await rejects(await profile('typo.json', '{"name":"x","bootstraps":[]}'), NetworkProfileError, /unknown field\(s\) bootstraps; allowed: name, /)
    await rejects(await profile('addr.json', '{"name":"x","bootstrap":["/ip4/1.2.3/tcp/1"]}'), InvalidMultiaddrError,
      /invalid multiaddr "\/ip4\/1\.2\.3\/tcp\/1" in "bootstrap" of network profile .*addr\.json.*expected e\.g\. \/ip4\/127\.0\.0\.1\/tcp\/4001/)
    await rejects(await profile('peer.json', '{"name":"x","bootstrap":["/ip4/1.2.3.4/tcp/1/p2p/notapeer"]}'), InvalidMultiaddrError, /invalid multiaddr/)
    await rejects(await profile('key.json', '{"name":"x","psk":"/key/swarm/psk/1.0.0/\\n/base16/\\nabcd"}'), SwarmKeyError, /64 hex digits/)
    await rejects(await profile('keypath.json', '{"name":"x","psk":"./missing.key"}'), NetworkProfileError, /cannot read the key file .*missing\.key/)
    await rejects(await profile('prefix.json', '{"name":"x","protocolPrefix":"layerswarm/x/"}'), NetworkProfileError, /"protocolPrefix" must look like/)
  })

  it('parses swarm.key text strictly', () => {
    const key = generateSwarmKey()
    assert.equal(new TextDecoder().decode(parseSwarmKey(key, 'k')), key.trim())
    assert.throws(() => parseSwarmKey(key.replace('/base16/', '/base64/'), 'k'), /only \/base16\/ is supported/)
    assert.throws(() => parseSwarmKey('hello', 'k'), SwarmKeyError)
  })

  it('rejects bad listen and bootstrap options with ConfigErrors', async () => {
    const dataDir = await tempDir(); dirs.push(dataDir)
    await assert.rejects(createNode({ dataDir, plugins: [], listen: ['127.0.0.1:4001'] }), /invalid multiaddr "127\.0\.0\.1:4001" in the listen addresses/)
    await assert.rejects(createNode({ dataDir, plugins: [], bootstrap: ['/dns4'] }), InvalidMultiaddrError)
  })
})

describe('node: bootstrap backoff', () => {
  it('doubles from the initial delay, caps at the maximum, and jitters within [0.5, 1) of it', () => {
    assert.equal(backoffDelay(1, 1000, 60_000, () => 0.999999), 1000)
    assert.equal(backoffDelay(3, 1000, 60_000, () => 0.999999), 4000)
    assert.equal(backoffDelay(30, 1000, 60_000, () => 0.999999), 60_000)
    assert.equal(backoffDelay(3, 1000, 60_000, () => 0), 2000)
  })
})

describe('node: a private swarm (pre-shared key)', function () {
  this.timeout(60_000)
  const { nodes, dirs } = nodeSuite()

  it('admits a node with the key and keeps out nodes with another key or none', async () => {
    const dir = await tempDir(); dirs.push(dir)
    const keyFile = join(dir, 'swarm.key')
    await writeFile(keyFile, generateSwarmKey())
    const file = join(dir, 'private.json')
    await writeFile(file, JSON.stringify({ name: 'private', lan: true, listen: ['/ip4/127.0.0.1/tcp/0'], psk: './swarm.key' }))
    const make = async (opts: Record<string, unknown>): Promise<LayerswarmNode> => {
      const dataDir = await tempDir(); dirs.push(dataDir)
      const n = await createNode({ dataDir, plugins: [], network: file, ...opts })
      nodes.push(n)
      await n.start()
      return n
    }
    const boot = await make({ bootstrapNode: true })
    const addr = boot.addresses()[0]
    const member = await make({ bootstrap: [addr] })
    assert.equal(member.config.network.private, true)
    await waitFor(() => member.libp2p.getPeers().some(p => p.toString() === boot.peerId), { what: 'the member to join the private swarm' })

    const other = join(dir, 'other.key')
    await writeFile(other, generateSwarmKey())
    const intruder = await make({ psk: other, bootstrapRetry: { initialDelayMs: 20, maxDelayMs: 50, dialTimeoutMs: 3000 } })
    await assert.rejects(intruder.libp2p.dial(boot.libp2p.getMultiaddrs()[0], { signal: AbortSignal.timeout(5000) }))
    assert.equal(intruder.libp2p.getPeers().length, 0)

    const open = await make({ network: 'local', listen: ['/ip4/127.0.0.1/tcp/0'] })
    await assert.rejects(open.libp2p.dial(boot.libp2p.getMultiaddrs()[0], { signal: AbortSignal.timeout(5000) }))
    assert.ok(!boot.libp2p.getPeers().some(p => [intruder.peerId, open.peerId].includes(p.toString())))
  })
})
