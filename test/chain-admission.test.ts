// Admission with --chain (core/chain/admission.ts), the judge's hook (core/peer-judge.ts), the axons a
// metagraph offers as dial targets, and the metagraph watch (core/chain/metagraph-watch.ts), all on
// injected metagraphs, readers and binding fetchers: no network.
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { ChainAdmission } from '../core/chain/admission.ts'
import { createBinding, decodeBinding, encodeBinding } from '../core/chain/binding.ts'
import { axonTargets } from '../core/chain/chain-node.ts'
import { AdmissionPendingError, BindingError, ChainUnreachableError, NotAdmittedError, SubnetNotFoundError } from '../core/chain/errors.ts'
import { MetagraphWatch } from '../core/chain/metagraph-watch.ts'
import type { ChainReader, Metagraph, Neuron, PeerBinding } from '../core/chain/types.ts'
import { devKeyFromUri, walletCryptoReady } from '../core/chain/wallet.ts'
import { PeerJudge, type Judgement } from '../core/peer-judge.ts'

function neuron (uid: number, hotkey: string, axon: Neuron['axon'] = null): Neuron {
  return { uid, hotkey, coldkey: hotkey, stake: 0n, trust: 0, incentive: 0, dividends: 0, emission: 0n, validatorPermit: false, lastUpdate: 0, axon }
}

function graph (block: number, hotkeys: string[]): Metagraph {
  return { netuid: 7, block, neurons: hotkeys.map((h, i) => neuron(i, h)) }
}

interface Node { key: PrivateKey, peer: string, binding: PeerBinding }

describe('chain admission', () => {
  let alice: Node, bob: Node, carol: Node
  let fetched: string[]
  /** What each peer answers when asked for its binding: bytes, or an error to throw. */
  let answers: Map<string, Uint8Array | Error>

  before(async () => {
    await walletCryptoReady()
    const make = async (uri: string): Promise<Node> => {
      const key = await generateKeyPair('Ed25519')
      const binding = await createBinding(key, devKeyFromUri(uri))
      return { key, peer: peerIdFromPrivateKey(key).toString(), binding }
    }
    alice = await make('//Alice')
    bob = await make('//Bob')
    carol = await make('//Charlie')
  })

  beforeEach(() => {
    fetched = []
    answers = new Map([alice, bob, carol].map(n => [n.peer, encodeBinding(n.binding)]))
  })

  function admission (opts: { now?: () => number, recheckMs?: number, self?: string } = {}): ChainAdmission {
    return new ChainAdmission({
      self: opts.self ?? 'self-peer',
      fetchBinding: async (peer) => {
        fetched.push(peer)
        await new Promise(resolve => setImmediate(resolve))
        const a = answers.get(peer)
        if (a instanceof Error) throw a
        if (a == null) throw new Error('no such peer')
        return a
      },
      verify: async (raw, peer) => await decodeBinding(raw as Uint8Array, peer),
      now: opts.now,
      recheckMs: opts.recheckMs
    })
  }

  it('admits a peer whose binding verifies and whose hotkey is registered', async () => {
    const a = admission()
    a.setMetagraph(graph(10, [alice.binding.hotkey, bob.binding.hotkey]))
    assert.equal(a.state(alice.peer), 'unknown')
    await a.admit(alice.peer)
    assert.equal(a.state(alice.peer), 'admitted')
    assert.equal(a.hotkeyOf(alice.peer), alice.binding.hotkey)
    assert.equal(a.peerOf(alice.binding.hotkey), alice.peer)
    await a.admit(alice.peer) // cached: not asked again
    assert.deepEqual(fetched, [alice.peer])
    assert.deepEqual(a.counts(), { admitted: 1, refused: 0 })
  })

  it('refuses a peer whose hotkey is not registered (NotAdmittedError, verdict reject)', async () => {
    const a = admission()
    a.setMetagraph(graph(10, [alice.binding.hotkey]))
    const err = await a.admit(carol.peer).then(() => undefined, (e: unknown) => e)
    assert.ok(err instanceof NotAdmittedError, String(err))
    assert.equal(err.verdict, 'reject')
    assert.match(err.message, /not registered on subnet 7/)
    assert.equal(a.state(carol.peer), 'refused')
    await assert.rejects(a.admit(carol.peer), NotAdmittedError)
    assert.deepEqual(fetched, [carol.peer]) // the refusal is cached
  })

  it('refuses a peer that presents another peer\'s binding (BindingError) or serves none', async () => {
    const a = admission()
    a.setMetagraph(graph(10, [alice.binding.hotkey, bob.binding.hotkey]))
    answers.set(bob.peer, encodeBinding(alice.binding)) // bob replays alice's binding
    const err = await a.admit(bob.peer).then(() => undefined, (e: unknown) => e)
    assert.ok(err instanceof NotAdmittedError, String(err))
    assert.match(err.message, /names peer .* not the sender/)
    assert.equal(a.state(bob.peer), 'refused')
    assert.equal(a.hotkeyOf(bob.peer), undefined)
    answers.set(carol.peer, new BindingError('the peer serves no binding (it runs without --chain)'))
    await assert.rejects(a.admit(carol.peer), /serves no binding/)
    assert.equal(a.state(carol.peer), 'refused')
  })

  it('a hotkey deregistered at the next refresh loses admission; one registered later gains it', async () => {
    const a = admission()
    a.setMetagraph(graph(10, [alice.binding.hotkey]))
    await a.admit(alice.peer)
    await assert.rejects(a.admit(bob.peer), NotAdmittedError)
    a.setMetagraph(graph(15, [bob.binding.hotkey]))
    assert.equal(a.state(alice.peer), 'refused')
    assert.equal(a.state(bob.peer), 'admitted')
    await assert.rejects(a.admit(alice.peer), /not registered on subnet 7 \(metagraph of block 15\)/)
    await a.admit(bob.peer)
    assert.deepEqual(fetched, [alice.peer, bob.peer]) // decided from the bindings it holds
  })

  it('shares one exchange between concurrent asks, caches no verdict when the peer cannot be asked, re-checks a refusal later', async () => {
    let t = 0
    const a = admission({ now: () => t, recheckMs: 1000 })
    a.setMetagraph(graph(10, [alice.binding.hotkey]))
    await Promise.all([a.admit(alice.peer), a.admit(alice.peer), a.admit(alice.peer)])
    assert.deepEqual(fetched, [alice.peer])

    answers.set(bob.peer, new Error('connection reset'))
    const err = await a.admit(bob.peer).then(() => undefined, (e: unknown) => e)
    assert.ok(err instanceof AdmissionPendingError, String(err))
    assert.equal(err.verdict, 'ignore')
    assert.equal(a.state(bob.peer), 'unknown')

    answers.set(bob.peer, encodeBinding(bob.binding))
    await assert.rejects(a.admit(bob.peer), NotAdmittedError)
    assert.equal(a.state(bob.peer), 'refused')
    t += 1000
    assert.equal(a.state(bob.peer), 'unknown') // asked anew
    a.setMetagraph(graph(11, [alice.binding.hotkey, bob.binding.hotkey]))
    assert.equal(a.state(bob.peer), 'admitted')
  })

  it('decides nothing before the first metagraph, and always admits this node', async () => {
    const a = admission({ self: alice.peer })
    assert.equal(a.state(alice.peer), 'admitted')
    await a.admit(alice.peer)
    await assert.rejects(a.admit(bob.peer), AdmissionPendingError)
    assert.deepEqual(fetched, [])
  })

  it('refuse() pins a refusal found elsewhere (an axon answered by a peer of another hotkey)', async () => {
    const a = admission()
    a.setMetagraph(graph(10, [alice.binding.hotkey]))
    await a.admit(alice.peer)
    a.refuse(alice.peer, 'bound to another hotkey than the axon')
    assert.equal(a.state(alice.peer), 'refused')
    await assert.rejects(a.admit(alice.peer), /another hotkey than the axon/)
  })

  describe('the peer judge', () => {
    it('without a policy admits everyone at once: nothing changes', async () => {
      const judge = new PeerJudge()
      assert.equal(judge.admissionOf('anyone'), 'admitted')
      await judge.admit('anyone')
      await judge.admit('anyone', AbortSignal.abort())
      assert.equal(judge.hotkeyOf('anyone'), undefined)
      assert.equal(judge.penalties().total, 0)
    })

    it('with the chain policy records one reject per refusal, in the caller\'s area', async () => {
      const judge = new PeerJudge()
      const seen: Judgement[] = []
      judge.onJudgement(j => { seen.push(j) })
      const a = admission()
      a.setMetagraph(graph(10, [alice.binding.hotkey]))
      judge.useAdmission(a)
      assert.equal(judge.admissionOf(carol.peer), 'unknown')
      await judge.admit(alice.peer, undefined, 'pipeline')
      assert.equal(judge.hotkeyOf(alice.peer), alice.binding.hotkey)
      await assert.rejects(judge.admit(carol.peer, undefined, 'pipeline'), NotAdmittedError)
      await assert.rejects(judge.admit(carol.peer, undefined, 'averaging'), NotAdmittedError)
      assert.equal(judge.admissionOf(carol.peer), 'refused')
      assert.deepEqual(seen.map(j => [j.peer, j.verdict, j.area, j.code]), [[carol.peer, 'reject', 'pipeline', 'ERR_CHAIN_NOT_ADMITTED']])
      assert.equal(judge.penaltiesOf(carol.peer), 1)
      assert.ok(judge.score(carol.peer) < 0)
      // a peer that cannot be asked is not judged
      answers.set(bob.peer, new Error('timeout'))
      await assert.rejects(judge.admit(bob.peer), AdmissionPendingError)
      assert.equal(judge.penaltiesOf(bob.peer), 0)
    })
  })
})

describe('chain bootstrap targets', () => {
  it('dials every served axon but this node\'s own, without a peer id', () => {
    const axon = (ip: string, ipType: 4 | 6, port: number): Neuron['axon'] => ({ ip, ipType, port, protocol: 0, version: 1, block: 3 })
    const m: Metagraph = {
      netuid: 1,
      block: 9,
      neurons: [
        neuron(0, 'hk-own', axon('10.0.0.1', 4, 4001)),
        neuron(1, 'hk-a', axon('10.0.0.2', 4, 4002)),
        neuron(2, 'hk-b', axon('fd00::2', 6, 4003)),
        neuron(3, 'hk-c', null),
        neuron(4, 'hk-d', axon('0.0.0.0', 4, 0)),
        neuron(5, 'hk-e', axon('10.0.0.5', 4, 0))
      ]
    }
    assert.deepEqual([...axonTargets(m, 'hk-own')], [['/ip4/10.0.0.2/tcp/4002', 'hk-a'], ['/ip6/fd00::2/tcp/4003', 'hk-b']])
  })
})

describe('metagraph watch', () => {
  function reader (state: { block: number, down: boolean, exists?: boolean, reads: number }): ChainReader {
    const check = (): void => { if (state.down) throw new Error('ECONNREFUSED') }
    return {
      head: async () => { check(); return state.block },
      subnetExists: async () => { check(); return state.exists ?? true },
      weightRules: async () => { throw new Error('unused') },
      metagraph: async (netuid) => { check(); state.reads++; return { netuid, block: state.block, neurons: [] } }
    }
  }

  it('reads the first metagraph, refreshes every refreshBlocks blocks, keeps the last one through an outage', async () => {
    const state = { block: 100, down: false, reads: 0 }
    const seen: number[] = []
    const w = new MetagraphWatch({ reader: reader(state), netuid: 3, refreshBlocks: 5, pollMs: 5, initialDelayMs: 5, maxDelayMs: 10, onMetagraph: m => { seen.push(m.block) } })
    try {
      const first = await w.start(5000)
      assert.equal(first.block, 100)
      state.block = 103
      await until(() => w.status().head === 103)
      assert.deepEqual(seen, [100]) // not due yet
      state.block = 105
      await until(() => seen.length === 2)
      assert.deepEqual(seen, [100, 105])
      state.down = true
      await until(() => !w.status().connected && w.status().failures >= 2)
      assert.equal(w.current()?.block, 105)
      state.down = false
      state.block = 111
      await until(() => w.status().connected && seen.length === 3)
      assert.equal(w.current()?.block, 111)
    } finally {
      await w.stop()
    }
  })

  it('fails start with ChainUnreachableError when the chain never answers, SubnetNotFoundError for a wrong netuid', async () => {
    const w = new MetagraphWatch({ reader: reader({ block: 1, down: true, reads: 0 }), netuid: 3, endpoint: 'ws://127.0.0.1:1', initialDelayMs: 5, maxDelayMs: 10, onMetagraph: () => {} })
    await assert.rejects(w.start(100), (err: unknown) => err instanceof ChainUnreachableError && /ws:\/\/127\.0\.0\.1:1/.test(err.message))
    await w.stop()
    const w2 = new MetagraphWatch({ reader: reader({ block: 1, down: false, exists: false, reads: 0 }), netuid: 3, onMetagraph: () => {} })
    await assert.rejects(w2.start(1000), SubnetNotFoundError)
    await w2.stop()
  })
})

/** Polls `cond` every 2 ms; fails after 3 s (bounded, no timing assertion). */
async function until (cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1500; i++) {
    if (cond()) return
    await new Promise(resolve => setTimeout(resolve, 2))
  }
  assert.fail('condition not reached in time')
}
