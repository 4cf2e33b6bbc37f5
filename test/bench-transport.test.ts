// `layerswarm bench transport` and the node's connection encrypters: the suite's JSON shape (a tiny
// activation, one rep: no timing is asserted), its flag errors, and a node that offers TLS first
// still connecting to a noise-only peer in both directions, TLS chosen between two such nodes.
import '../core/polyfills.ts'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { noise } from '@chainsafe/libp2p-noise'
import { multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from '@libp2p/interface'
import { createNode, type LayerswarmNode } from '../core/index.ts'
import { ENCRYPTER_PROTOCOLS } from '../core/node/encrypters.ts'
import { runCli } from './cli-helpers.ts'

const ECHO = '/layerswarm/test/echo/1.0.0'

describe('bench transport', function () {
  this.timeout(240_000)

  it('--json prints one report: every row has a positive value and ratio = value / baseline.value', async function () {
    const r = await runCli(['bench', 'transport', '--json', '--mb', '4', '--reps', '1'], { timeoutMs: 220_000 })
    assert.equal(r.code, 0, r.stderr)
    const lines = r.stdout.trim().split('\n')
    assert.equal(lines.length, 1, `stdout must be one line: ${r.stdout}`)
    const report = JSON.parse(lines[0])
    assert.equal(report.suite, 'transport')
    assert.equal(report.baseline.name, 'raw TCP')
    assert.equal(report.baseline.mib, 4)
    assert.ok(Number.isFinite(report.machine.loadAvgStart) && Number.isFinite(report.machine.loadAvgEnd))
    const mbps = report.results.filter((x: { unit: string }) => x.unit === 'MB/s')
    const cpu = report.results.filter((x: { unit: string }) => x.unit === 'CPU s/GB')
    assert.equal(mbps.length, 7, 'raw TCP, framed x3 encrypters, bare x3 encrypters')
    assert.equal(cpu.length, 7)
    assert.match(mbps[0].name, /^raw TCP/)
    for (const enc of [/noise/, /TLS/, /plaintext: UNENCRYPTED/]) {
      assert.ok(mbps.some((x: { name: string }) => /^framed protocol/.test(x.name) && enc.test(x.name)), `framed row for ${String(enc)}`)
      assert.ok(mbps.some((x: { name: string }) => /^bare libp2p stream/.test(x.name) && enc.test(x.name)), `bare row for ${String(enc)}`)
    }
    for (const x of report.results) {
      assert.ok(Number.isFinite(x.value) && x.value > 0, `${x.name}: ${x.value}`)
      assert.equal(x.baseline.name, 'raw TCP')
      assert.ok(x.baseline.value > 0)
      assert.equal(x.ratio, x.value / x.baseline.value, x.name)
    }
    assert.equal(mbps[0].ratio, 1)
  })

  for (const bad of [['--mb', '0'], ['--mb', 'x'], ['--mb', '2000'], ['--reps', '0']]) {
    it(`${bad.join(' ')} exits with code 2 and says what to give`, async function () {
      const r = await runCli(['bench', 'transport', ...bad], { timeoutMs: 120_000 })
      assert.equal(r.code, 2, r.stderr)
      assert.match(r.stderr, new RegExp(`${bad[0]}.*(MiB in \\(0, 1024\\]|integer >= 1)`))
      assert.equal(r.stdout, '')
    })
  }
})

describe('connection encrypters: TLS first, noise second', function () {
  this.timeout(120_000)
  const dirs: string[] = []
  const nodes: LayerswarmNode[] = []
  let old: Libp2p | undefined

  async function tlsFirstNode (): Promise<LayerswarmNode> {
    const dir = await mkdtemp(join(tmpdir(), 'lsw-encrypters-'))
    dirs.push(dir)
    const node = await createNode({ dataDir: dir, plugins: [], bootstrapNode: true, controlEndpoint: false, listen: ['/ip4/127.0.0.1/tcp/0'] })
    nodes.push(node)
    await node.start()
    return node
  }

  after(async function () {
    await Promise.all(nodes.map(async n => { await n.stop() }))
    await old?.stop()
    await Promise.all(dirs.map(async d => { await rm(d, { recursive: true, force: true }) }))
  })

  it('a node offers TLS then noise', function () {
    assert.deepEqual([...ENCRYPTER_PROTOCOLS], ['/tls/1.0.0', '/noise'])
  })

  it('two TLS-first nodes choose TLS; each authenticates the other\'s peer id', async function () {
    const [a, b] = [await tlsFirstNode(), await tlsFirstNode()]
    const conn = await a.libp2p.dial(multiaddr(b.addresses()[0]))
    assert.equal(conn.encryption, '/tls/1.0.0')
    assert.equal(conn.remotePeer.toString(), b.peerId)
    // the listener registers its side once its upgrade ends, a moment after the dialer's
    let back = b.libp2p.getConnections(a.libp2p.peerId)
    for (let i = 0; i < 200 && back.length === 0; i++) {
      await new Promise(resolve => setTimeout(resolve, 50))
      back = b.libp2p.getConnections(a.libp2p.peerId)
    }
    assert.ok(back.length >= 1, 'the listener sees the connection within 10 s')
    assert.equal(back[0].encryption, '/tls/1.0.0')
    assert.equal(back[0].remotePeer.toString(), a.peerId)
  })

  it('a TLS-first node and a noise-only node connect with noise, whichever dials', async function () {
    const a = nodes[0] ?? await tlsFirstNode()
    old = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
    const out = await a.libp2p.dial(old.getMultiaddrs()[0])
    assert.equal(out.encryption, '/noise')
    assert.equal(out.remotePeer.toString(), old.peerId.toString())
    await out.close()
    const inbound = await old.dial(multiaddr(a.addresses()[0]))
    assert.equal(inbound.encryption, '/noise')
    assert.equal(inbound.remotePeer.toString(), a.peerId)
    // and it carries streams: an echo from the noise-only node over the TLS-first node's connection
    await old.handle(ECHO, (stream) => {
      stream.addEventListener('message', (evt) => { stream.send(evt.data.subarray()); void stream.close().catch(() => {}) }, { once: true })
    })
    const stream = await a.libp2p.dialProtocol(old.peerId, ECHO, { signal: AbortSignal.timeout(30_000) })
    const echoed = new Promise<Uint8Array>((resolve, reject) => {
      stream.addEventListener('message', (evt) => { resolve(evt.data.subarray()) }, { once: true })
      stream.addEventListener('close', (evt) => { reject(evt.error ?? new Error('closed before the echo')) }, { once: true })
    })
    stream.send(Uint8Array.of(1, 2, 3))
    assert.deepEqual([...await echoed], [1, 2, 3])
    assert.equal(a.libp2p.getConnections(old.peerId)[0].encryption, '/noise')
    await stream.close()
  })
})
