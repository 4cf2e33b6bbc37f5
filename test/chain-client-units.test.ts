// The chain client's pure parts: axon IPs to and from subtensor's u128, the addresses serve_axon
// refuses, IP:PORT parsing, the local nonce tracker (order, concurrency, resync), and the mapping of
// runtime module errors and pool rejections to typed errors.
import assert from 'node:assert/strict'
import { ipToU128, isUnservableIp, parseHostPort, u128ToIp } from '../core/chain/axon-address.ts'
import {
  AlreadyRegisteredError, ChainExtrinsicError, InsufficientBalanceError, LoopbackAddressError, SubnetNotFoundError,
  WeightsTooSoonError, WeightVersionKeyError
} from '../core/chain/errors.ts'
import { mapModuleError, mapPoolError } from '../core/chain/extrinsic.ts'
import { isStaleNonceError, NonceTracker } from '../core/chain/nonce-tracker.ts'
import { startDevChain } from '../core/chain/dev-chain.ts'
import { ConfigError } from '../core/errors.ts'

describe('chain: axon addresses', () => {
  it('IPv4 is its 32-bit value, and back', () => {
    assert.deepEqual(ipToU128('10.1.2.3'), { value: 0x0a010203n, ipType: 4 })
    assert.deepEqual(ipToU128('255.255.255.255'), { value: 0xffffffffn, ipType: 4 })
    assert.equal(u128ToIp(0x0a010203n, 4), '10.1.2.3')
    assert.equal(u128ToIp(0n, 4), '0.0.0.0')
  })

  it('IPv6 is its 128-bit value, and back in RFC 5952 text', () => {
    assert.deepEqual(ipToU128('::1'), { value: 1n, ipType: 6 })
    assert.equal(ipToU128('2001:db8::8a2e:370:7334').value, 0x20010db80000000000008a2e03707334n)
    assert.equal(ipToU128('[fd00::5]').value, (0xfd00n << 112n) | 5n)
    assert.equal(ipToU128('::ffff:10.0.0.1').value, (0xffffn << 32n) | 0x0a000001n)
    assert.equal(u128ToIp(0x20010db80000000000008a2e03707334n, 6), '2001:db8::8a2e:370:7334')
    assert.equal(u128ToIp(1n, 6), '::1')
    assert.equal(u128ToIp(0n, 6), '::')
    // the longest zero run is compressed, the first one on a tie; a lone zero group is not
    assert.equal(u128ToIp(ipToU128('2001:0:0:1:0:0:0:1').value, 6), '2001:0:0:1::1')
    assert.equal(u128ToIp(ipToU128('2001:db8:0:0:1:0:0:1').value, 6), '2001:db8::1:0:0:1')
    assert.equal(u128ToIp(ipToU128('2001:db8:0:1:1:1:1:1').value, 6), '2001:db8:0:1:1:1:1:1')
    for (const ip of ['fe80::1', '2001:db8:85a3::8a2e:370:7334', '1:2:3:4:5:6:7:8']) assert.equal(u128ToIp(ipToU128(ip).value, 6), ip)
  })

  it('refuses what is not an address', () => {
    for (const bad of ['', 'localhost', '1.2.3', '256.1.1.1', '1::2::3', '12345::', 'g::1']) assert.throws(() => ipToU128(bad), ConfigError, bad)
    assert.throws(() => u128ToIp(1n << 32n, 4), RangeError)
    assert.throws(() => u128ToIp(1n, 5), RangeError)
  })

  it('knows the addresses the runtime refuses to serve', () => {
    for (const ip of ['127.0.0.1', '127.8.9.10', '0.0.0.0', '::1', '::', '::ffff:127.0.0.1']) assert.equal(isUnservableIp(ip), true, ip)
    for (const ip of ['10.1.2.3', '192.168.1.1', '8.8.8.8', 'fd00::1', '2001:db8::1']) assert.equal(isUnservableIp(ip), false, ip)
  })

  it('parses IP:PORT and [IPv6]:PORT', () => {
    assert.deepEqual(parseHostPort('10.1.2.3:8091'), { ip: '10.1.2.3', port: 8091 })
    assert.deepEqual(parseHostPort('[fd00::1]:4001'), { ip: 'fd00::1', port: 4001 })
    for (const bad of ['10.1.2.3', '10.1.2.3:0', '10.1.2.3:70000', 'fd00::1:4001', 'host:80']) assert.throws(() => parseHostPort(bad), ConfigError, bad)
  })
})

describe('chain: local nonces', () => {
  it('asks the chain once, then counts up; concurrent submissions get distinct nonces in order', async () => {
    let asked = 0
    const t = new NonceTracker(async () => { asked++; return 5 })
    const seen: number[] = []
    await Promise.all([0, 1, 2, 3].map(async () => await t.withNonce('A', async n => { await new Promise(resolve => setTimeout(resolve, 1)); seen.push(n) })))
    assert.deepEqual(seen, [5, 6, 7, 8])
    assert.equal(asked, 1)
    assert.equal(t.peek('A'), 9)
  })

  it('a failed submission makes the next one ask the chain again; signers are independent', async () => {
    let chainNonce = 3
    const t = new NonceTracker(async a => a === 'B' ? 100 : chainNonce)
    await t.withNonce('A', async n => { assert.equal(n, 3) })
    await assert.rejects(t.withNonce('A', async () => { throw new Error('1010: Invalid Transaction: Transaction is outdated') }))
    chainNonce = 7
    await t.withNonce('A', async n => { assert.equal(n, 7) })
    await t.withNonce('B', async n => { assert.equal(n, 100) })
    t.resync('A')
    assert.equal(t.peek('A'), undefined)
  })

  it('tells stale-nonce pool answers from others', () => {
    assert.equal(isStaleNonceError(new Error('1010: Invalid Transaction: Transaction is outdated')), true)
    assert.equal(isStaleNonceError(new Error('1014: Priority is too low: (1 vs 1)')), true)
    assert.equal(isStaleNonceError(new Error('invalid stale')), true)
    assert.equal(isStaleNonceError(new Error('Inability to pay some fees')), false)
  })
})

describe('chain: typed extrinsic errors', () => {
  it('maps module errors by name', () => {
    assert.ok(mapModuleError('subtensorModule', 'NotEnoughBalanceToStake', '') instanceof InsufficientBalanceError)
    assert.ok(mapModuleError('balances', 'InsufficientBalance', '') instanceof InsufficientBalanceError)
    assert.ok(mapModuleError('subtensorModule', 'HotKeyAlreadyRegisteredInSubNet', '') instanceof AlreadyRegisteredError)
    const sub = mapModuleError('subtensorModule', 'SubNetworkDoesNotExist', '', { netuid: 9 })
    assert.ok(sub instanceof SubnetNotFoundError && sub.netuid === 9)
    assert.ok(mapModuleError('subtensorModule', 'MechanismDoesNotExist', '', { netuid: 9 }) instanceof SubnetNotFoundError)
    assert.ok(mapModuleError('subtensorModule', 'IncorrectWeightVersionKey', '') instanceof WeightVersionKeyError)
    assert.ok(mapModuleError('subtensorModule', 'InvalidIpAddress', '', { ip: '127.0.0.1' }) instanceof LoopbackAddressError)
    const soon = mapModuleError('subtensorModule', 'RevealTooEarly', 'too early')
    assert.ok(soon instanceof WeightsTooSoonError && soon.errorName === 'subtensorModule.RevealTooEarly')
    const other = mapModuleError('subtensorModule', 'NotEnoughStakeToSetWeights', 'stake too low')
    assert.ok(other instanceof ChainExtrinsicError && !(other instanceof WeightsTooSoonError))
    assert.equal(other.errorName, 'subtensorModule.NotEnoughStakeToSetWeights')
    assert.equal(other.docs, 'stake too low')
  })

  it('maps pool rejections', () => {
    assert.ok(mapPoolError(new Error('1010: Invalid Transaction: Inability to pay some fees , e.g. account balance too low')) instanceof InsufficientBalanceError)
    assert.ok(mapPoolError(new Error('1010: Invalid Transaction: Custom error: 3')) instanceof ChainExtrinsicError)
  })
})

describe('chain: the dev chain\'s refusals', () => {
  it('a missing chain spec is a ConfigError that says how to give one', async () => {
    await assert.rejects(startDevChain({ genesis: '/nonexistent/raonet.json' }),
      (err: unknown) => err instanceof ConfigError && /\/nonexistent\/raonet\.json not found.*--genesis.*LAYERSWARM_CHAIN_SPEC/.test(err.message))
  })
})
