// `layerswarm chain ...` as a user runs it, against chopsticks on raonet.json: a wallet made with
// `wallet create`, `chain register` (burned registration, the coldkey unlocked from a passphrase
// file), `chain serve`, `chain status --json`, the typed refusals' exit codes, and `chain dev`
// printing its endpoint and stopping on SIGINT.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { connectChain, type ChainClient } from '../core/chain/chain-client.ts'
import { createDevSubnet, defaultChainSpec, startDevChain, type DevChain } from '../core/chain/dev-chain.ts'
import { devKeyFromUri, walletCryptoReady } from '../core/chain/wallet.ts'
import { BIN, ROOT, runCli } from './cli-helpers.ts'
import { removeDirs, tempDir } from './node-helpers.ts'

const TAO = 1_000_000_000n
const SPEC = defaultChainSpec()

describe('chain CLI (chopsticks on raonet.json)', function () {
  this.timeout(120_000)
  let chain: DevChain | undefined
  let client: ChainClient | undefined
  let netuid: number
  let dataDir: string
  let passFile: string
  let hotkey: string
  const dirs: string[] = []
  const base = (): string[] => ['--chain', chain!.endpoint, '--data-dir', dataDir, '--json']

  before(async function () {
    if (!existsSync(SPEC)) {
      console.log(`    skipped: ${SPEC} is absent (the chain tests need ../shared/chain/raonet.json)`)
      this.skip()
    }
    await walletCryptoReady()
    const dir = await tempDir('lsw-chain-cli-')
    dirs.push(dir)
    dataDir = join(dir, 'data')
    passFile = join(dir, 'pass')
    await writeFile(passFile, 'a test passphrase\n', { mode: 0o600 })
    const created = await runCli(['wallet', 'create', '--data-dir', dataDir, '--passphrase-file', passFile, '--json'])
    assert.equal(created.code, 0, created.stderr)
    const w = JSON.parse(created.stdout) as { coldkey: { address: string }, hotkey: { address: string } }
    hotkey = w.hotkey.address
    chain = await startDevChain({ genesis: SPEC })
    client = await connectChain(chain.endpoint)
    netuid = await createDevSubnet(chain, client, devKeyFromUri('//H2CliOwner'), devKeyFromUri('//H2CliOwnerHot').address)
    await chain.fund(w.coldkey.address, 1000n * TAO)
  })

  after(async () => {
    await client?.close()
    await chain?.stop()
    await removeDirs(dirs)
  })

  it('register, serve and status --json', async () => {
    const reg = await runCli(['chain', 'register', '--netuid', String(netuid), '--passphrase-file', passFile, ...base()], { timeoutMs: 60_000 })
    assert.equal(reg.code, 0, reg.stderr)
    const r = JSON.parse(reg.stdout) as { uid: number, hotkey: string, netuid: number }
    assert.equal(r.hotkey, hotkey)
    assert.equal(r.netuid, netuid)

    const srv = await runCli(['chain', 'serve', '--netuid', String(netuid), '--address', '10.9.8.7:4001', ...base()], { timeoutMs: 60_000 })
    assert.equal(srv.code, 0, srv.stderr)

    const st = await runCli(['chain', 'status', '--netuid', String(netuid), ...base()], { timeoutMs: 60_000 })
    assert.equal(st.code, 0, st.stderr)
    const s = JSON.parse(st.stdout) as Record<string, any>
    assert.equal(s.registered, true)
    assert.equal(s.uid, r.uid)
    assert.equal(s.hotkey, hotkey)
    assert.deepEqual({ ip: s.axon.ip, port: s.axon.port }, { ip: '10.9.8.7', port: 4001 })
    assert.equal(typeof s.stake, 'string')
    assert.ok(BigInt(s.balance) < 1000n * TAO, `the burn was paid: ${s.balance}`)
    for (const k of ['trust', 'incentive', 'dividends', 'validatorPermit', 'emission', 'coldkey', 'block']) assert.ok(k in s, k)
  })

  it('typed refusals: registered again, a missing subnet, a loopback axon, no --chain', async () => {
    const again = await runCli(['chain', 'register', '--netuid', String(netuid), '--passphrase-file', passFile, ...base()], { timeoutMs: 60_000 })
    assert.equal(again.code, 1)
    assert.match(again.stderr, /ERR_CHAIN_ALREADY_REGISTERED/)
    const missing = await runCli(['chain', 'status', '--netuid', '999', ...base()], { timeoutMs: 60_000 })
    assert.equal(missing.code, 1)
    assert.match(missing.stderr, /subnet 999 does not exist/)
    const loop = await runCli(['chain', 'serve', '--netuid', String(netuid), '--address', '127.0.0.1:4001', ...base()], { timeoutMs: 60_000 })
    assert.equal(loop.code, 1)
    assert.match(loop.stderr, /ERR_CHAIN_LOOPBACK_ADDRESS/)
    const noChain = await runCli(['chain', 'status', '--netuid', String(netuid), '--data-dir', dataDir])
    assert.equal(noChain.code, 2)
    assert.match(noChain.stderr, /pass --chain/)
  })

  it('chain dev prints its endpoint, funds, and stops on SIGINT', async () => {
    const addr = devKeyFromUri('//H2CliDevFund').address
    const child = spawn(process.execPath, [BIN, 'chain', 'dev', '--genesis', SPEC, '--port', '0', '--fund', addr, '--fund-amount', '12.5', '--json'],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    const exited = new Promise<number | null>(resolve => child.on('exit', code => { resolve(code) }))
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let out = ''
        const timer = setTimeout(() => { reject(new Error(`no endpoint line in 60 s; stderr: ${stderr}`)) }, 60_000)
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString()
          const nl = out.indexOf('\n')
          if (nl >= 0) { clearTimeout(timer); resolve(out.slice(0, nl)) }
        })
        void exited.then(code => { clearTimeout(timer); reject(new Error(`exited ${code}: ${stderr}`)) })
      })
      const info = JSON.parse(line) as { endpoint: string, funded: string[] }
      assert.match(info.endpoint, /^ws:\/\/127\.0\.0\.1:\d+$/)
      assert.deepEqual(info.funded, [addr])
      const c = await connectChain(info.endpoint, { retries: 0 })
      try {
        assert.equal(await c.balance(addr), 12_500_000_000n)
      } finally {
        await c.close()
      }
      child.kill('SIGINT')
      assert.equal(await exited, 0, stderr)
    } finally {
      if (child.exitCode == null) child.kill('SIGKILL')
      await exited
    }
  })
})
