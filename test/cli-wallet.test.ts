// `layerswarm wallet` through real child processes: create prints each mnemonic exactly once and
// show/list never print one (nor a key's encoded secret); passphrases come from a file or the env
// and their absence without a terminal is a clear exit 2; import restores the same addresses.
import assert from 'node:assert/strict'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runCli } from './cli-helpers.ts'
import { removeDirs, tempDir } from './node-helpers.ts'

function count (haystack: string, needle: string): number {
  return haystack.split(needle).length - 1
}

describe('cli: layerswarm wallet', function () {
  this.timeout(120_000)
  const dirs: string[] = []
  let root: string
  let dataDir: string
  let created: { coldkey: string, coldMnemonic: string, hotkey: string, hotMnemonic: string }

  before(async () => {
    root = await tempDir('lsw-cli-wallet-')
    dirs.push(root)
    dataDir = join(root, 'data')
    await writeFile(join(root, 'pw'), 'correct horse battery\n', { mode: 0o600 })
  })
  after(async () => { await removeDirs(dirs) })

  it('create prints the mnemonics once, with a warning, and writes 0600 files', async () => {
    const r = await runCli(['wallet', 'create', '--data-dir', dataDir, '--passphrase-file', join(root, 'pw')])
    assert.equal(r.code, 0, r.stderr)
    const cold = /^coldkey mnemonic: (.+)$/m.exec(r.stdout)?.[1]
    const hot = /^hotkey mnemonic: +(.+)$/m.exec(r.stdout)?.[1]
    assert.ok(cold != null && hot != null, r.stdout)
    assert.equal(cold.split(' ').length, 12)
    assert.equal(count(r.stdout + r.stderr, cold), 1)
    assert.equal(count(r.stdout + r.stderr, hot), 1)
    assert.match(r.stdout, /Write the mnemonic\(s\) below down/)
    const coldkey = /^coldkey +(5\w+) /m.exec(r.stdout)?.[1]
    const hotkey = /^hotkey +default (5\w+) /m.exec(r.stdout)?.[1]
    assert.ok(coldkey != null && hotkey != null, r.stdout)
    created = { coldkey, coldMnemonic: cold, hotkey, hotMnemonic: hot }
    for (const f of ['coldkey', 'coldkeypub.txt', 'hotkeys/default']) {
      assert.equal((await stat(join(dataDir, 'wallets', 'default', f))).mode & 0o777, 0o600, f)
    }
  })

  it('show and list print addresses, never mnemonics or encoded keys', async () => {
    const secrets = [
      created.coldMnemonic, created.hotMnemonic,
      JSON.parse(await readFile(join(dataDir, 'wallets/default/coldkey'), 'utf8')).encoded,
      JSON.parse(await readFile(join(dataDir, 'wallets/default/hotkeys/default'), 'utf8')).encoded
    ]
    const show = await runCli(['wallet', 'show', '--data-dir', dataDir])
    const showJson = await runCli(['wallet', 'show', '--data-dir', dataDir, '--json'])
    const list = await runCli(['wallet', 'list', '--data-dir', dataDir, '--json'])
    for (const r of [show, showJson, list]) {
      assert.equal(r.code, 0, r.stderr)
      for (const s of secrets) assert.ok(!(r.stdout + r.stderr).includes(s))
    }
    assert.match(show.stdout, new RegExp(`coldkey +${created.coldkey}`))
    assert.match(show.stdout, new RegExp(`default +${created.hotkey}`))
    assert.deepEqual(JSON.parse(showJson.stdout), { wallet: 'default', coldkey: created.coldkey, hotkeys: [{ name: 'default', address: created.hotkey }] })
    assert.deepEqual(JSON.parse(list.stdout), [JSON.parse(showJson.stdout)])
  })

  it('refuses without a passphrase source, overwriting, bad flags and bad names', async () => {
    const noPass = await runCli(['wallet', 'create', '--data-dir', dataDir, '--wallet', 'other'])
    assert.equal(noPass.code, 2)
    assert.match(noPass.stderr, /--passphrase-file FILE or set \$LAYERSWARM_WALLET_PASSPHRASE/)
    const again = await runCli(['wallet', 'create', '--data-dir', dataDir, '--passphrase-file', join(root, 'pw')])
    assert.equal(again.code, 1)
    assert.match(again.stderr, /already exists.*ERR_WALLET_EXISTS/)
    const words = await runCli(['wallet', 'create', '--data-dir', dataDir, '--words', '13', '--hotkey', 'x'])
    assert.equal(words.code, 2)
    assert.match(words.stderr, /--words must be 12 or 24/)
    const name = await runCli(['wallet', 'show', '--data-dir', dataDir, '--wallet', '../etc'])
    assert.equal(name.code, 2)
    assert.match(name.stderr, /invalid wallet name/)
    const both = await runCli(['wallet', 'import', '--data-dir', dataDir, '--wallet', 'w', '--coldkey', '--hotkey', 'h', '--seed', '00'])
    assert.equal(both.code, 2)
    assert.match(both.stderr, /one of --coldkey or --hotkey/)
  })

  it('adds a hotkey without a passphrase and imports keys to the same addresses (--json, env passphrase)', async () => {
    const add = await runCli(['wallet', 'create', '--data-dir', dataDir, '--no-coldkey', '--hotkey', 'miner2', '--words', '24', '--json'])
    assert.equal(add.code, 0, add.stderr)
    const added = JSON.parse(add.stdout)
    assert.equal(added.coldkey, null)
    assert.equal(added.hotkey.name, 'miner2')
    assert.equal(added.hotkey.mnemonic.split(' ').length, 24)

    await writeFile(join(root, 'mnemonic'), created.coldMnemonic + '\n', { mode: 0o600 })
    const imp = await runCli(['wallet', 'import', '--data-dir', dataDir, '--wallet', 'restored', '--coldkey', '--mnemonic-file', join(root, 'mnemonic'), '--json'],
      { env: { LAYERSWARM_WALLET_PASSPHRASE: 'from env' } })
    assert.equal(imp.code, 0, imp.stderr)
    assert.equal(JSON.parse(imp.stdout).address, created.coldkey)
    assert.ok(!imp.stdout.includes(created.coldMnemonic))
    const seed = '0xe5be9a5092b81bca64be81d212e7f2f9eba183bb7a90954f7b76361f6edb5c0a'
    const hot = await runCli(['wallet', 'import', '--data-dir', dataDir, '--wallet', 'restored', '--hotkey', 'alice', '--seed', seed])
    assert.equal(hot.code, 0, hot.stderr)
    assert.match(hot.stdout, /imported hotkey alice 5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY/)
    const list = await runCli(['wallet', 'list', '--data-dir', dataDir])
    assert.equal(list.code, 0, list.stderr)
    assert.match(list.stdout, /wallet +restored\ncoldkey +5\w+\nhotkeys\n +alice +5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY/)
    assert.ok(list.stdout.includes(added.hotkey.address))
    assert.ok(!list.stdout.includes(added.hotkey.mnemonic))
  })
})
