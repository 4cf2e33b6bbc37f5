// The node CLI as separate processes: `start` a bootstrap node and two nodes, parse their listening
// lines, query `status --json`, check `keys`, SIGTERM => exit 0 with plugins stopped. Bad input => exit 2.
import assert from 'node:assert/strict'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { removeDirs, tempDir } from './node-helpers.ts'
import { waitFor } from './wait-helpers.ts'
import { runCli, startCli, terminate, type RunningNode } from './cli-helpers.ts'

const MARKER = './test/fixtures/node/marker-plugin.ts'

describe('cli: layerswarm start / status / keys as separate processes', function () {
  this.timeout(120_000)
  const dirs: string[] = []
  const running: RunningNode[] = []
  const dir = async (): Promise<string> => { const d = await tempDir('lsw-cli-'); dirs.push(d); return d }
  after(async () => {
    await Promise.all(running.map(async n => await terminate(n)))
    await removeDirs(dirs)
  })

  it('runs a swarm: status --json shows peers and plugins, SIGTERM exits 0 after stopping plugins', async () => {
    const [bootDir, aDir, bDir] = [await dir(), await dir(), await dir()]
    const boot = await startCli(['--bootstrap-node', '--data-dir', bootDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--log-format', 'json'])
    running.push(boot)
    assert.ok(boot.addrs[0].startsWith('/ip4/127.0.0.1/tcp/') && boot.addrs[0].endsWith(`/p2p/${boot.peerId}`))
    // one node configured by flags, one by environment variables
    const a = await startCli(['--data-dir', aDir, '--bootstrap', boot.addrs[0], '--plugins', MARKER])
    running.push(a)
    const b = await startCli([], {
      env: { LAYERSWARM_DATA_DIR: bDir, LAYERSWARM_BOOTSTRAP: boot.addrs[0], LAYERSWARM_PLUGINS: '', LAYERSWARM_LISTEN: '/ip4/127.0.0.1/tcp/0' }
    })
    running.push(b)
    assert.equal(b.addrs.length, 1, 'LAYERSWARM_LISTEN replaced the profile\'s two listen addresses')

    const statusOf = async (d: string): Promise<any> => {
      const r = await runCli(['status', '--data-dir', d, '--json'])
      assert.equal(r.code, 0, r.stderr)
      return JSON.parse(r.stdout)
    }
    const sa = await waitFor(async () => {
      const s = await statusOf(aDir)
      return s.peers.includes(boot.peerId) && s.peers.includes(b.peerId) ? s : undefined
    }, { what: 'node a to see the bootstrap node and node b', timeoutMs: 30_000, intervalMs: 500 })
    assert.equal(sa.peerId, a.peerId)
    assert.deepEqual(sa.addresses, a.addrs)
    assert.deepEqual(sa.plugins, ['test-marker'])
    assert.equal(sa.pid, a.child.pid)
    const sBoot = await statusOf(bootDir)
    assert.equal(sBoot.bootstrapNode, true)
    assert.deepEqual(sBoot.plugins, [], 'a bootstrap node loads no plugins')

    const keys = await runCli(['keys', '--data-dir', aDir, '--json'])
    assert.equal(keys.code, 0)
    assert.equal(JSON.parse(keys.stdout).peerId, a.peerId)
    assert.equal(JSON.parse(keys.stdout).created, false)

    // the plugin saw core's bindings; SIGTERM stops it, then the process exits 0
    assert.equal(await readFile(join(aDir, 'marker.log'), 'utf8'), `register ${a.peerId}\nstart\n`)
    assert.deepEqual(await terminate(a), { code: 0, signal: null })
    assert.equal(await readFile(join(aDir, 'marker.log'), 'utf8'), `register ${a.peerId}\nstart\nstop\n`)
    assert.match(a.stderr(), /shutting down signal=SIGTERM/)
    assert.match(a.stderr(), /shut down cleanly/)

    const gone = await runCli(['status', '--data-dir', aDir, '--json'])
    assert.equal(gone.code, 1)
    assert.match(gone.stderr, /no node is running on data dir .* \(no lock file\)/)
    assert.equal(gone.stdout, '')

    assert.deepEqual(await terminate(b), { code: 0, signal: null })
    assert.deepEqual(await terminate(boot), { code: 0, signal: null })
    assert.match(boot.stderr(), /"msg":"shut down cleanly"/, 'json log format')
  })

  it('loads the default plugin (backend-cpu), refuses a second node on the same data dir, and exits 0 on SIGINT', async () => {
    const d = await dir()
    const n = await startCli(['--data-dir', d])
    running.push(n)
    const r = await runCli(['status', '--data-dir', d, '--json'])
    assert.deepEqual(JSON.parse(r.stdout).plugins, ['backend-cpu'])
    const second = await runCli(['start', '--data-dir', d, '--plugins', ''])
    assert.equal(second.code, 1)
    assert.match(second.stderr, /data dir .* is in use by a running node \(pid \d+\)/)
    n.child.kill('SIGINT')
    assert.deepEqual(await n.exited, { code: 0, signal: null })
  })

  it('detects the lock and socket of a killed node: status exits 1, a new node takes the data dir over', async () => {
    const d = await dir()
    const killed = await startCli(['--data-dir', d, '--plugins', ''])
    running.push(killed)
    killed.child.kill('SIGKILL')
    assert.equal((await killed.exited).signal, 'SIGKILL')
    await stat(join(d, 'node.lock')) // left behind
    const r = await runCli(['status', '--data-dir', d, '--json'])
    assert.equal(r.code, 1)
    assert.match(r.stderr, new RegExp(`no node is running on data dir .* \\(stale lock: pid ${killed.child.pid} is gone\\)`))
    const next = await startCli(['--data-dir', d, '--plugins', ''])
    running.push(next)
    assert.equal(next.peerId, killed.peerId, 'same identity')
    const s = await runCli(['status', '--data-dir', d, '--json'])
    assert.equal(JSON.parse(s.stdout).pid, next.child.pid)
    assert.deepEqual(await terminate(next), { code: 0, signal: null })
  })

  it('keys creates an identity with mode 0600, prints the same peer id each time, and makes swarm keys', async () => {
    const d = join(await dir(), 'fresh')
    const first = await runCli(['keys', '--data-dir', d])
    assert.equal(first.code, 0)
    assert.match(first.stdout, /^12D3KooW\w+\n$/)
    assert.match(first.stderr, /created a new identity key/)
    assert.equal((await stat(join(d, 'identity.key'))).mode & 0o777, 0o600)
    const again = await runCli(['keys', '--data-dir', d])
    assert.equal(again.stdout, first.stdout)
    const psk = await runCli(['keys', '--new-swarm-key'])
    assert.match(psk.stdout, /^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n$/)
  })

  it('status on a data dir without a node exits 1 with a clear message', async () => {
    const r = await runCli(['status', '--data-dir', await dir(), '--json'])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /no node is running on data dir .*; start one with `layerswarm start --data-dir/)
  })

  describe('bad input exits 2 with what is wrong and how to fix it', () => {
    it('a malformed config file', async () => {
      const d = await dir()
      const file = join(d, 'config.json')
      await writeFile(file, '{"listen": ["/ip4/127.0.0.1/tcp/0"],}')
      const r = await runCli(['start', '--config', file, '--data-dir', d])
      assert.equal(r.code, 2)
      assert.match(r.stderr, /config file .*config\.json is not valid JSON .*; fix the syntax/)
    })

    it('a bad multiaddr in a flag and in the environment', async () => {
      const d = await dir()
      const r = await runCli(['start', '--data-dir', d, '--bootstrap', '/ip4/127.0.0.1/tcp/notaport'])
      assert.equal(r.code, 2)
      assert.match(r.stderr, /invalid multiaddr "\/ip4\/127\.0\.0\.1\/tcp\/notaport" in --bootstrap: .*expected e\.g\./)
      const e = await runCli(['start', '--data-dir', d], { env: { LAYERSWARM_LISTEN: '/ip4/127.0.0.1/tcp/0,localhost:4001' } })
      assert.equal(e.code, 2)
      assert.match(e.stderr, /invalid multiaddr "localhost:4001" in LAYERSWARM_LISTEN/)
    })

    it('an unknown flag, an unknown network and a bad log level', async () => {
      const d = await dir()
      const flag = await runCli(['start', '--data-dir', d, '--listne', '/ip4/127.0.0.1/tcp/0'])
      assert.equal(flag.code, 2)
      assert.match(flag.stderr, /unknown option '--listne'/)
      const net = await runCli(['start', '--data-dir', d, '--network', 'mainnet'])
      assert.equal(net.code, 2)
      assert.match(net.stderr, /no such network: use local or testnet, or the path of a profile JSON file/)
      const lvl = await runCli(['start', '--data-dir', d, '--log-level', 'loud'])
      assert.equal(lvl.code, 2)
      assert.match(lvl.stderr, /log level "loud" is not one of trace, debug, info, warn, error, silent/)
    })

    it('--help exits 0', async () => {
      for (const args of [['--help'], ['start', '--help']]) {
        const r = await runCli(args)
        assert.equal(r.code, 0, args.join(' '))
        assert.match(r.stdout, /Usage: layerswarm/)
      }
    })
  })
})
