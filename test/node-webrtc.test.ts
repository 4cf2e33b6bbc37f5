// WebRTC hole punching's configuration and decisions, without a network: STUN server addresses from
// flags, env, config file and network profiles (a malformed one is a ConfigError, exit 2); which nodes
// load the transport and what a node does where it cannot load; a WebRTC connection counts as direct;
// which relayed-only connections the upgrader dials over WebRTC (fake libp2p components). The real
// hole punching through two NATs: test/netns/netns-nat.test.ts.
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { ConfigError } from '../core/errors.ts'
import { DEFAULT_STUN_SERVERS, InvalidStunServerError, parseStunServer } from '../core/node/stun-servers.ts'
import { WEBRTC_SIGNALING, WebRTCUpgrader, webrtcAddrOf, webrtcParts, type UpgraderComponents, type WebRTCModule } from '../core/node/webrtc-transport.ts'
import { summarizeConnections } from '../core/node/connections.ts'
import { parseNetworkProfile } from '../core/node/network-profile.ts'
import { resolveStartConfig } from '../cli/config.ts'
import { createLogger } from '../core/logger.ts'

const A = '12D3KooWAzTz4PEv8W7sf6h3vWmFBH6NUNtWGHNW7A4kGPPTFbWH'
const B = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BH6TWAiqBpgfnWw8hi2jw'
const RELAY = '/ip4/7.77.0.1/tcp/4001/p2p/12D3KooWLFT2LnqVRn4NZFtS2c9RLyFMRTkjfQwDHLjYVbGmMqYS'

describe('node: WebRTC and STUN configuration', () => {
  it('accepts stun:HOST[:PORT] and rejects anything else with a ConfigError', () => {
    for (const ok of ['stun:stun.l.google.com:19302', 'stun:7.77.0.5:3478', 'stun:example.org', 'stun:[2001:db8::1]:3478', ...DEFAULT_STUN_SERVERS]) {
      assert.equal(parseStunServer(ok, 'test'), ok)
    }
    for (const bad of ['stun.l.google.com:19302', 'turn:x.org', 'stun:', 'stun:host:0', 'stun:host:70000', 'stun:host:12ab', 'stun:ho st', 'stun:a:b:c', 'stun:-x.org', 42]) {
      assert.throws(() => parseStunServer(bad, '--stun'), (err: any) => {
        assert.ok(err instanceof InvalidStunServerError && err instanceof ConfigError, String(err))
        assert.equal(err.code, 'ERR_CONFIG')
        assert.match(err.message, /--stun.*stun:HOST\[:PORT\]/)
        return true
      })
    }
  })

  it('takes STUN servers and --no-webrtc from flags, env and the config file; a malformed one names its source', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lsw-webrtc-'))
    try {
      const file = join(dir, 'c.json')
      await writeFile(file, JSON.stringify({ stun: ['stun:file.example:3478'], webrtc: false }))
      const fromFile = await resolveStartConfig({ config: file }, {}, dir)
      assert.deepEqual(fromFile.node.stun, ['stun:file.example:3478'])
      assert.equal(fromFile.node.webrtc, false)
      const fromEnv = await resolveStartConfig({ config: file }, { LAYERSWARM_STUN: 'stun:env.example, stun:7.77.0.5:3478', LAYERSWARM_WEBRTC: 'true' }, dir)
      assert.deepEqual(fromEnv.node.stun, ['stun:env.example', 'stun:7.77.0.5:3478'])
      assert.equal(fromEnv.node.webrtc, true)
      const fromFlags = await resolveStartConfig({ stun: ['stun:flag.example:1'], webrtc: false }, { LAYERSWARM_STUN: 'stun:env.example' }, dir)
      assert.deepEqual(fromFlags.node.stun, ['stun:flag.example:1'])
      assert.equal(fromFlags.node.webrtc, false)
      // commander sets webrtc: true unless --no-webrtc: that default overrides nothing
      assert.equal((await resolveStartConfig({ webrtc: true }, { LAYERSWARM_WEBRTC: 'false' }, dir)).node.webrtc, false)

      const rejects = async (flags: object, env: Record<string, string>, where: RegExp): Promise<void> => {
        await assert.rejects(resolveStartConfig(flags, env, dir), (err: any) => {
          assert.ok(err instanceof ConfigError, `${err?.name}: ${err?.message}`)
          assert.match(err.message, where)
          return true
        })
      }
      await rejects({ stun: ['stun.example.org:3478'] }, {}, /invalid STUN server "stun.example.org:3478" in --stun/)
      await rejects({}, { LAYERSWARM_STUN: 'stun:x.org:99999' }, /LAYERSWARM_STUN.*port "99999"/)
      await writeFile(file, JSON.stringify({ stun: ['stun:'] }))
      await rejects({ config: file }, {}, /"stun" of .*c\.json/)
      await writeFile(file, JSON.stringify({ stun: 'stun:x.org' }))
      await rejects({ config: file }, {}, /"stun" must be an array of strings/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('network profiles may name STUN servers; a malformed one is a ConfigError', async () => {
    const p = await parseNetworkProfile(JSON.stringify({ name: 'n', stun: ['stun:7.77.0.5:3478'] }), 'test', '/')
    assert.deepEqual(p.stun, ['stun:7.77.0.5:3478'])
    assert.equal((await parseNetworkProfile(JSON.stringify({ name: 'n' }), 'test', '/')).stun, undefined)
    for (const stun of [['stun:bad host'], 'stun:x.org', [7]]) {
      await assert.rejects(parseNetworkProfile(JSON.stringify({ name: 'n', stun }), 'prof.json', '/'), (err: any) => {
        assert.ok(err instanceof ConfigError, String(err))
        assert.match(err.message, /prof\.json/)
        return true
      })
    }
  })
})

describe('node: which nodes load WebRTC', () => {
  const lines: string[] = []
  const logger = createLogger({ level: 'info', write: (line: string) => { lines.push(line) } })
  let given: unknown
  const fake = async (): Promise<WebRTCModule> => ({ webRTC: init => { given = init; return () => ({}) as never } })
  beforeEach(() => { lines.length = 0; given = undefined })

  it('internet networks: the transport with the profile\'s STUN servers (else the public ones) and the upgrader', async () => {
    const services = {}
    const parts = await webrtcParts({}, { lan: false, stun: ['stun:7.77.0.5:3478'] }, logger, services, fake)
    assert.equal(parts.transports.length, 1)
    assert.deepEqual(parts.connectionManager, { inboundUpgradeTimeout: 30_000 })
    assert.deepEqual(Object.keys(services), ['webrtcUpgrade'])
    assert.deepEqual(given, { rtcConfiguration: { iceServers: [{ urls: ['stun:7.77.0.5:3478'] }] } })
    await webrtcParts({}, { lan: false }, logger, {}, fake)
    assert.deepEqual((given as any).rtcConfiguration.iceServers.map((s: any) => s.urls[0]), DEFAULT_STUN_SERVERS)
    await webrtcParts({ stun: [] }, { lan: false, stun: ['stun:x.org'] }, logger, {}, fake)
    assert.deepEqual(given, { rtcConfiguration: { iceServers: [] } }, 'an empty list means no STUN server')
  })

  it('LAN networks, bootstrap nodes and webrtc: false load nothing (no import, no start-up cost)', async () => {
    const refuse = async (): Promise<WebRTCModule> => { throw new Error('must not be imported') }
    for (const [opts, net] of [[{}, { lan: true }], [{ webrtc: false }, { lan: false }], [{ bootstrapNode: true }, { lan: false }]] as const) {
      assert.deepEqual(await webrtcParts(opts, net, logger, {}, refuse), { transports: [] })
    }
    assert.equal(lines.length, 0)
  })

  it('where the transport cannot load (native binary missing), runs without it and says so in one line', async () => {
    const broken = async (): Promise<WebRTCModule> => { throw new Error('Cannot load native addon for node-datachannel on sunos (x64)') }
    assert.deepEqual(await webrtcParts({}, { lan: false }, logger, {}, broken), { transports: [] })
    assert.equal(lines.length, 1)
    assert.match(lines[0], /WebRTC transport cannot load; running without it.*node-datachannel on sunos/)
  })

  it('a bad STUN server given to createNode\'s options is a ConfigError before anything loads', async () => {
    await assert.rejects(webrtcParts({ stun: ['nope'] }, { lan: false }, logger, {}, fake), InvalidStunServerError)
  })
})

describe('node: WebRTC connections', () => {
  const conn = (peer: string, addr: string) => ({ remotePeer: { toString: () => peer }, remoteAddr: { toString: () => addr } })

  it('a WebRTC connection signalled through a relay is direct; a plain relayed one is not', () => {
    const s = summarizeConnections([
      conn(B, `${RELAY}/p2p-circuit/p2p/${B}`),
      conn(B, `${RELAY}/p2p-circuit/webrtc/p2p/${B}`),
      conn(A, `/webrtc/p2p/${A}`),
      conn('c', `${RELAY}/p2p-circuit/p2p/c`)
    ])
    assert.deepEqual(s.peers.map(p => [p.peer, p.direct]), [[A, true], [B, true], ['c', false]])
    assert.equal(s.peers[1].addr, `${RELAY}/p2p-circuit/webrtc/p2p/${B}`)
  })

  /** Fake components: `self` with one peer, its connections (relayed ones by `relayed`) and whether it answers WebRTC signalling. */
  function fakeLibp2p (self: string, peer: string, conns: Array<{ direct: boolean }>, answers: boolean, fail = false) {
    const events = new EventTarget()
    const dials: string[] = []
    const remotePeer = peerIdFromString(peer)
    const connections = conns.map(c => ({ ...c, status: 'open', remotePeer, remoteAddr: multiaddr(c.direct ? '/ip4/7.77.0.3/tcp/5555' : `${RELAY}/p2p-circuit/p2p/${peer}`) }))
    const c: UpgraderComponents = {
      peerId: peerIdFromString(self),
      events,
      connectionManager: { getConnections: () => connections as never },
      transportManager: {
        dial: async (ma: Multiaddr) => {
          dials.push(ma.toString())
          if (fail) throw new Error('ICE failed')
          return { remoteAddr: ma, direct: true } as never
        }
      },
      peerStore: { get: async () => ({ protocols: answers ? ['/ipfs/id/1.0.0', WEBRTC_SIGNALING] : ['/ipfs/id/1.0.0'] }) }
    }
    const open = async (): Promise<void> => {
      events.dispatchEvent(new CustomEvent('connection:open', { detail: connections[0] ?? { remotePeer } }))
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    return { c, dials, open }
  }
  const logger = createLogger({ level: 'silent' })
  const [low, high] = A < B ? [A, B] : [B, A]

  it('builds the WebRTC address from the relayed connection\'s', () => {
    assert.equal(webrtcAddrOf(multiaddr(`${RELAY}/p2p-circuit/p2p/${B}`), B).toString(), `${RELAY}/p2p-circuit/webrtc/p2p/${B}`)
    assert.equal(webrtcAddrOf(multiaddr(`${RELAY}/p2p-circuit`), B).toString(), `${RELAY}/p2p-circuit/webrtc/p2p/${B}`)
  })

  it('the smaller peer id dials a relayed-only peer that answers WebRTC; not when a direct connection exists or the peer cannot answer', async () => {
    const cases: Array<[string, string, Array<{ direct: boolean }>, boolean, number]> = [
      [low, high, [{ direct: false }], true, 1],
      [high, low, [{ direct: false }], true, 0],
      [low, high, [{ direct: false }, { direct: true }], true, 0],
      [low, high, [{ direct: false }], false, 0],
      [low, high, [], true, 0]
    ]
    for (const [self, other, conns, answers, want] of cases) {
      const f = fakeLibp2p(self, other, conns, answers)
      const up = new WebRTCUpgrader(f.c, { log: logger })
      up.start()
      await f.open()
      up.stop()
      assert.equal(f.dials.length, want, JSON.stringify({ self: self === low ? 'smaller' : 'larger', conns, answers }))
      if (want > 0) assert.equal(f.dials[0], `${RELAY}/p2p-circuit/webrtc/p2p/${other}`)
    }
  })

  it('a failed attempt is not retried at once', async () => {
    const f = fakeLibp2p(low, high, [{ direct: false }], true, true)
    const up = new WebRTCUpgrader(f.c, { log: logger, retryAfterMs: 60_000 })
    up.start()
    await f.open()
    await f.open()
    up.stop()
    assert.equal(f.dials.length, 1)
  })
})
