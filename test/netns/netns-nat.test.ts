// Two nodes behind separate NATs (test/netns/nat-topology.ts), reachable only through the relay (the
// bootstrap node), train the 3-stage micro model with a public node: the public node serves stage 0,
// the homes stages 1 and 2, so every activation between stages 1 and 2 crosses the NATs. Checked:
// the homes find out on their own that they are behind NAT (status nat.reachability 'private') and
// take a relay reservation, the relay and the public node are 'public' (AutoNAT: a peer dialed them
// back), the homes' connection to each other ends up direct (WebRTC, signalled through the relay: ICE
// punches a UDP hole between the routers, with the STUN server on the internet bridge), the direct
// path carried bytes, home A talks to the public node directly, and the run finishes.
// Printed: when A <-> B went direct, the bytes each home exchanged with the relay, the other home and
// the public node (router counters), the share of home-to-home traffic that went direct, the run's
// tokens/s and held-out loss. On failure the nodes' logs are kept and their tails printed. Needs root,
// iptables and coturn; skips otherwise.
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TrainingStatus } from '../../core/demo/swarm-view.ts'
import { netnsUnavailable } from '../netns-helpers.ts'
import { startSwarm, waitForTraining, writeMicroModel, type TestSwarm } from '../swarm-helpers.ts'
import { waitFor } from '../wait-helpers.ts'
import { NatTopology, natUnavailable, PUBLIC_IP } from './nat-topology.ts'
import { keepLogs, runArgs, startNatSwarm, statusOf, type NatStatus, type NatSwarm } from './nat-swarm.ts'

const STEPS = 20

describe('netns: two nodes behind NAT train through a relay', function () {
  this.timeout(600_000)
  let topo: NatTopology | undefined
  let swarm: NatSwarm | undefined
  let loop: TestSwarm | undefined
  /** The NAT run's held-out loss, for the loopback comparison. */
  let natLoss: number | undefined
  let dir = ''

  before(async function () {
    const why = netnsUnavailable() ?? natUnavailable()
    if (why != null) {
      console.log(`      skipped: ${why}`)
      this.skip()
    }
    dir = await mkdtemp(join(tmpdir(), 'lsw-netns-nat-'))
    topo = NatTopology.create(`n${process.pid % 1000}`)
  })
  let failed = false
  afterEach(function () { if (this.currentTest?.state === 'failed') failed = true })
  after(async () => {
    await swarm?.launcher.stopAll(10_000).catch(() => {})
    await loop?.stop().catch(() => {})
    topo?.destroy()
    if (dir !== '' && (failed || process.env.LAYERSWARM_NETNS_KEEP_LOGS === '1')) await keepLogs(dir)
    if (dir !== '') await rm(dir, { recursive: true, force: true })
  })

  it('finds the NAT, joins through circuit relay v2, goes direct by WebRTC hole punching and serves stages', async () => {
    const t = topo!
    swarm = await startNatSwarm(t, dir, STEPS)
    const { relay, relayDir, start } = swarm
    // the homes first: the data node (stage 0) starts once they are up, so the run's home-to-home
    // traffic tells how much of a run goes direct once WebRTC is up (20 steps of this model take a few
    // seconds, about as long as the homes take to go direct)
    const t0 = performance.now()
    const [homeA, homeB] = await Promise.all([
      start('homeA-s1', t.homes[0].host, t.homes[0].ip, 1),
      start('homeB-s2', t.homes[1].host, t.homes[1].ip, 2)
    ])

    // the homes learn they are behind NAT and take a relay reservation on their own
    for (const h of [homeA, homeB]) {
      const s = await waitFor(async () => {
        const st = await statusOf(h.dataDir)
        return st?.nat.reachability === 'private' && st.nat.relayAddrs.length > 0 ? st : undefined
      }, { what: `${h.name}: reachability private and a relay reservation`, timeoutMs: 60_000, intervalMs: 500 })
      assert.equal(s.nat.relayReason, 'private')
      assert.ok(s.nat.relayAddrs[0].startsWith(relay.addrs[0]), `reserved on the relay: ${s.nat.relayAddrs[0]}`)
    }
    // the homes reach each other through the relay first, then directly once WebRTC punched a hole
    const link = await waitFor(async () => (await statusOf(homeA.dataDir))?.connections.peers.find(p => p.peer === homeB.node.peerId),
      { what: 'home A connected to home B', timeoutMs: 120_000, intervalMs: 500 })
    const tLink = performance.now()
    const directLink = await waitFor(async () => (await statusOf(homeA.dataDir))?.connections.peers.find(p => p.peer === homeB.node.peerId && p.direct),
      { what: 'home A <-> home B direct (WebRTC)', timeoutMs: 120_000, intervalMs: 500 })
    console.log(`      home A -> home B: first ${link.direct ? 'direct' : 'relayed'} (${link.addr}); direct ${((performance.now() - tLink) / 1000).toFixed(1)} s later (${directLink.addr}), ${((performance.now() - t0) / 1000).toFixed(1)} s after launch`)
    const tPub = performance.now()
    const pub = await start('public-s0', t.pub, PUBLIC_IP, 0)
    const nodes = [pub, homeA, homeB]
    // training time: from the first step the data node (stage 0) starts, once it has its peers
    await waitForTraining([pub], 'stage 0 training', ts => ts[0] != null && ts[0].state !== 'starting' && ts[0].state !== 'waiting-peers', 240_000)
    const tTrain = performance.now()

    const last = await waitForTraining(nodes, `${STEPS} steps across the NATs`, ts => ts.every(x => x?.state === 'done') &&
      ts.some(x => x?.stage === 2 && x.evalLoss != null), 480_000) as TrainingStatus[]
    const now = performance.now()
    const [seconds, trainSeconds] = [(now - t0) / 1000, (now - tTrain) / 1000]
    const tokens = last.filter(x => x.stage === 0).reduce((a, x) => a + x.tokens, 0)
    const evalLoss = last.find(x => x.stage === 2 && x.evalLoss != null)?.evalLoss ?? undefined
    natLoss = evalLoss
    assert.ok(last.every(x => x.microbatchesDone > 0), 'every node, the homes included, served microbatches')

    // after the run: AutoNAT confirmed the public addresses of the relay and of the public node (a peer
    // dialed them back); status tells direct from relayed
    const isPublic = async (d: string): Promise<NatStatus | undefined> => { const s = await statusOf(d); return s?.nat.reachability === 'public' ? s : undefined }
    const rs = await waitFor(async () => await isPublic(relayDir), { what: 'the relay: reachability public (AutoNAT)', timeoutMs: 60_000, intervalMs: 1000 })
    await waitFor(async () => await isPublic(pub.dataDir), { what: 'the public node: reachability public (AutoNAT)', timeoutMs: 60_000, intervalMs: 1000 })
    const [a, b] = await Promise.all([statusOf(homeA.dataDir), statusOf(homeB.dataDir)])
    const aToB = a?.connections.peers.find(p => p.peer === homeB.node.peerId)
    const aToRelay = a?.connections.peers.find(p => p.peer === relay.peerId)
    assert.equal(aToRelay?.direct, true, 'a home dials the relay directly (out through its NAT)')
    assert.equal(aToB?.direct, true, `home A <-> home B direct after the run (${aToB?.addr ?? 'closed'})`)
    const [ta, tb] = [t.traffic(0), t.traffic(1)]
    assert.ok(ta.otherHome > 0 && tb.otherHome > 0, `the hole-punched path carried bytes (home A ${ta.otherHome} B, home B ${tb.otherHome} B)`)
    // stage 0 -> stage 1 goes straight from the public node to home A: its address is confirmed, so a
    // home dials it (or DCUtR upgrades the relayed connection the public node opened)
    assert.ok(ta.publicNode > 0, `home A exchanged bytes with the public node directly (${ta.publicNode} B)`)
    const direct = ta.otherHome + tb.otherHome
    const viaRelay = ta.relay + tb.relay
    const allDirect = direct + ta.publicNode + tb.publicNode
    const pct = (x: number, y: number): string => (100 * x / Math.max(1, x + y)).toFixed(1)
    const pubSeconds = (now - tPub) / 1000
    console.log(`      ${STEPS} steps: ${seconds.toFixed(1)} s from launch, ${pubSeconds.toFixed(1)} s from stage 0's launch (${(tokens / pubSeconds).toFixed(0)} tokens/s), ${trainSeconds.toFixed(1)} s training, ${(tokens / trainSeconds).toFixed(0)} tokens/s while training; held-out loss ${evalLoss?.toFixed(4)}`)
    console.log(`      reachability: relay ${rs.nat.reachability}, public node public, homes ${a?.nat.reachability}/${b?.nat.reachability}`)
    console.log(`      home A connections: ${a?.connections.direct} direct, ${a?.connections.relayed} relayed; A <-> B ${aToB == null ? 'closed' : aToB.direct ? 'direct' : 'relayed'}`)
    console.log(`      bytes through the NATs: home A relay ${ta.relay}, home B ${ta.otherHome}, public node ${ta.publicNode}; home B relay ${tb.relay}, home A ${tb.otherHome}, public node ${tb.publicNode}`)
    console.log(`      home-to-home traffic: ${direct} B direct, ${viaRelay} B through the relay (relay total, control traffic included): ${pct(direct, viaRelay)}% direct`)
    console.log(`      all the homes' traffic: ${allDirect} B direct (public node, other home), ${viaRelay} B via the relay: ${pct(allDirect, viaRelay)}% direct`)
  })

  // 20 steps on samples drawn from each run's own (random) peer ids: runs differ by a few percent
  // (0.6-3.7% seen), so the bound is wide; the figure is printed (the 5% criterion: netns-training)
  it('reaches about the loopback run\'s held-out loss', async function () {
    if (natLoss == null) this.skip() // the NAT run failed: nothing to compare
    const d = join(dir, 'loopback')
    await mkdir(d)
    loop = await startSwarm(d, [0, 1, 2], runArgs(await writeMicroModel(d), STEPS))
    const last = await waitForTraining(loop.nodes, `loopback: ${STEPS} steps`, ts => ts.every(x => x?.state === 'done') &&
      ts.some(x => x?.stage === 2 && x.evalLoss != null), 300_000) as TrainingStatus[]
    const lo = last.find(x => x.stage === 2 && x.evalLoss != null)?.evalLoss as number
    const gap = Math.abs(natLoss! - lo) / lo
    console.log(`      held-out loss: NAT ${natLoss!.toFixed(4)}, loopback ${lo.toFixed(4)}: ${(gap * 100).toFixed(2)}% apart`)
    assert.ok(gap <= 0.1, `held-out loss ${natLoss} (NAT) vs ${lo} (loopback): ${(gap * 100).toFixed(1)}% apart`)
  })
})
