// Wallets on disk: the btcli-like layout with 0600 files in 0700 dirs, an encrypted coldkey that a
// wrong passphrase does not open, unattended hotkeys, imports that reproduce the same addresses,
// refusal to overwrite, name validation, and list/show that hold addresses only. In the net set only
// for its time: each coldkey encryption or unlock is the keyring's scrypt, about 0.5 s.
import assert from 'node:assert/strict'
import { readFile, stat, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Keyring } from '@polkadot/keyring'
import { cryptoWaitReady } from '@polkadot/util-crypto'
import {
  createHotkey, createWallet, devKeyFromUri, importColdkey, importHotkey, listWallets, loadColdkey,
  loadHotkey, showWallet, walletCryptoReady
} from '../core/chain/wallet.ts'
import {
  BadMnemonicError, WalletCorruptError, WalletExistsError, WalletNameError, WalletNotFoundError, WrongPassphraseError
} from '../core/chain/errors.ts'
import { removeDirs, tempDir } from './node-helpers.ts'

const ALICE = '5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY'

describe('chain: wallets', function () {
  this.timeout(180_000) // scrypt (the keyring's encryption) is slow on a loaded 2-core machine
  const dirs: string[] = []
  const dir = async (): Promise<string> => { const d = await tempDir('lsw-wallet-'); dirs.push(d); return d }
  after(async () => { await removeDirs(dirs) })

  it('creates a coldkey and a hotkey in the btcli layout, files 0600 in 0700 dirs', async () => {
    const dataDir = join(await dir(), 'data')
    const w = await createWallet({ dataDir, wallet: 'w1', passphrase: 'correct horse' })
    assert.equal(w.mnemonic.split(' ').length, 12)
    assert.equal(w.path, join(dataDir, 'wallets', 'w1', 'coldkey'))
    const h = await createHotkey({ dataDir, wallet: 'w1', hotkey: 'default' })
    assert.equal(h.path, join(dataDir, 'wallets', 'w1', 'hotkeys', 'default'))
    for (const f of [w.path, join(dataDir, 'wallets', 'w1', 'coldkeypub.txt'), h.path]) {
      assert.equal((await stat(f)).mode & 0o777, 0o600, f)
    }
    for (const d of ['wallets', 'wallets/w1', 'wallets/w1/hotkeys']) {
      assert.equal((await stat(join(dataDir, d))).mode & 0o777, 0o700, d)
    }
    assert.equal((await readFile(join(dataDir, 'wallets', 'w1', 'coldkeypub.txt'), 'utf8')).trim(), w.coldkey)
    // the coldkey file is encrypted: its JSON says so and holds no mnemonic
    const cold = JSON.parse(await readFile(w.path, 'utf8'))
    assert.deepEqual(cold.encoding.type, ['scrypt', 'xsalsa20-poly1305'])
    assert.ok(!(await readFile(w.path, 'utf8')).includes(w.mnemonic.split(' ')[0] + ' '))
    const hot = JSON.parse(await readFile(h.path, 'utf8'))
    assert.deepEqual(hot.encoding.type, ['none'])
    assert.equal(hot.address, h.hotkey)

    const c = await loadColdkey(dataDir, 'w1', 'correct horse')
    assert.equal(c.address, w.coldkey)
    assert.equal(c.isLocked, false)
    const k = await loadHotkey(dataDir, 'w1', 'default')
    assert.equal(k.address, h.hotkey)
    assert.equal(k.isLocked, false)
    assert.equal(k.sign(new Uint8Array([1, 2, 3])).length, 64)
    assert.ok(h.hotkey.startsWith('5'), 'ss58 format 42')
  })

  it('refuses a wrong passphrase, overwriting, bad names and missing wallets with typed errors', async () => {
    const dataDir = await dir()
    await createWallet({ dataDir, wallet: 'w', passphrase: 'pw', words: 24 })
    await assert.rejects(loadColdkey(dataDir, 'w', 'not-pw'), WrongPassphraseError)
    await assert.rejects(createWallet({ dataDir, wallet: 'w', passphrase: 'pw' }), WalletExistsError)
    await createHotkey({ dataDir, wallet: 'w', hotkey: 'h' })
    await assert.rejects(createHotkey({ dataDir, wallet: 'w', hotkey: 'h' }), WalletExistsError)
    const again = await createWallet({ dataDir, wallet: 'w', passphrase: 'pw2', overwrite: true })
    assert.equal((await showWallet(dataDir, 'w')).coldkey, again.coldkey)
    for (const bad of ['../x', 'a/b', '', '.', 'x'.repeat(65), 'sp ace']) {
      await assert.rejects(createWallet({ dataDir, wallet: bad, passphrase: 'pw' }), WalletNameError, bad)
      await assert.rejects(createHotkey({ dataDir, wallet: 'w', hotkey: bad }), WalletNameError, bad)
    }
    await assert.rejects(createWallet({ dataDir, wallet: 'e', passphrase: '' }), BadMnemonicError)
    await assert.rejects(createWallet({ dataDir, wallet: 'e', passphrase: 'pw', words: 13 as 12 }), BadMnemonicError)
    await assert.rejects(createHotkey({ dataDir, wallet: 'e', hotkey: 'h', words: 18 as 12 }), BadMnemonicError)
    await assert.rejects(loadColdkey(dataDir, 'nope', 'pw'), WalletNotFoundError)
    await assert.rejects(loadHotkey(dataDir, 'w', 'nope'), WalletNotFoundError)
    await assert.rejects(showWallet(dataDir, 'nope'), WalletNotFoundError)
    await writeFile(join(dataDir, 'wallets', 'w', 'hotkeys', 'broken'), 'not json', { mode: 0o600 })
    await assert.rejects(loadHotkey(dataDir, 'w', 'broken'), WalletCorruptError)
  })

  it('imports from a mnemonic, a seed and the keyring JSON to the same addresses', async () => {
    const dataDir = await dir()
    const src = await createWallet({ dataDir, wallet: 'src', passphrase: 'a' })
    const hot = await createHotkey({ dataDir, wallet: 'src', hotkey: 'h' })
    const m = await importColdkey({ dataDir, wallet: 'm', passphrase: 'b', mnemonic: `  ${src.mnemonic.replace(/ /g, '\n ')} ` })
    assert.equal(m.coldkey, src.coldkey)
    const json = await readFile(src.path, 'utf8')
    const j = await importColdkey({ dataDir, wallet: 'j', passphrase: 'c', json, jsonPassphrase: 'a' })
    assert.equal(j.coldkey, src.coldkey)
    await assert.rejects(importColdkey({ dataDir, wallet: 'j2', passphrase: 'c', json, jsonPassphrase: 'wrong' }), BadMnemonicError)
    await assert.rejects(importColdkey({ dataDir, wallet: 'j2', passphrase: 'c', json: '{' }), BadMnemonicError)
    const ih = await importHotkey({ dataDir, wallet: 'm', hotkey: 'h', mnemonic: hot.mnemonic })
    assert.equal(ih.hotkey, hot.hotkey)
    assert.equal((await loadHotkey(dataDir, 'm', 'h')).address, hot.hotkey)
    await assert.rejects(importHotkey({ dataDir, wallet: 'm', hotkey: 'h', mnemonic: hot.mnemonic }), WalletExistsError)

    // Alice's well-known dev seed
    const seed = '0xe5be9a5092b81bca64be81d212e7f2f9eba183bb7a90954f7b76361f6edb5c0a'
    const s = await importHotkey({ dataDir, wallet: 's', hotkey: 'alice', seedHex: seed })
    assert.equal(s.hotkey, ALICE)
    const s2 = await importColdkey({ dataDir, wallet: 's', passphrase: 'x', seedHex: seed.slice(2) })
    assert.equal(s2.coldkey, ALICE)
    await assert.rejects(importHotkey({ dataDir, wallet: 's', hotkey: 'x', seedHex: '0x1234' }), BadMnemonicError)
    await assert.rejects(importHotkey({ dataDir, wallet: 's', hotkey: 'x', seedHex: 'zz'.repeat(32) }), BadMnemonicError)
    await assert.rejects(importHotkey({ dataDir, wallet: 's', hotkey: 'x', mnemonic: 'abandon abandon abandon' }), BadMnemonicError)
  })

  it('lists and shows addresses only, never secrets', async () => {
    const dataDir = await dir()
    assert.deepEqual(await listWallets(dataDir), [])
    const a = await createWallet({ dataDir, wallet: 'a', passphrase: 'pw' })
    const ah = await createHotkey({ dataDir, wallet: 'a', hotkey: 'h2' })
    const ah1 = await createHotkey({ dataDir, wallet: 'a', hotkey: 'h1' })
    const bh = await createHotkey({ dataDir, wallet: 'b', hotkey: 'default' })
    const list = await listWallets(dataDir)
    assert.deepEqual(list, [
      { wallet: 'a', coldkey: a.coldkey, hotkeys: [{ name: 'h1', address: ah1.hotkey }, { name: 'h2', address: ah.hotkey }] },
      { wallet: 'b', coldkey: null, hotkeys: [{ name: 'default', address: bh.hotkey }] }
    ])
    const text = JSON.stringify(list) + JSON.stringify(await showWallet(dataDir, 'a'))
    const secrets = [a.mnemonic, ah.mnemonic, ah1.mnemonic, bh.mnemonic].flatMap(m => m.split(' ').slice(0, 3).join(' '))
    for (const s of secrets) assert.ok(!text.includes(s))
    for (const f of [join(dataDir, 'wallets/a/hotkeys/h1'), join(dataDir, 'wallets/a/coldkey')]) {
      assert.ok(!text.includes(JSON.parse(await readFile(f, 'utf8')).encoded))
    }
    // coldkeypub.txt lost: the address still shows, from the coldkey JSON's public field
    await unlink(join(dataDir, 'wallets/a/coldkeypub.txt'))
    assert.equal((await showWallet(dataDir, 'a')).coldkey, a.coldkey)
  })

  it('devKeyFromUri gives the dev chain accounts', async () => {
    await walletCryptoReady()
    await cryptoWaitReady()
    assert.equal(devKeyFromUri('//Alice').address, ALICE)
    assert.equal(devKeyFromUri('//Alice').address, new Keyring({ type: 'sr25519', ss58Format: 42 }).addFromUri('//Alice').address)
  })
})
