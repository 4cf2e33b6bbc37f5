// Identity persistence and the data dir: key file mode 0600 in a 0700 dir, same peer id across
// restarts, a corrupted key named in the error, one node per data dir, stale locks taken over.
import assert from 'node:assert/strict'
import { stat, writeFile, chmod, readFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import {
  createNode, loadOrCreateIdentity, IdentityKeyError, DataDirLockedError, DataDirError, NodeStateError
} from '../core/index.ts'
import { removeDirs, tempDir } from './node-helpers.ts'

describe('node: identity and data dir', function () {
  this.timeout(30_000)
  const dirs: string[] = []
  const dir = async (): Promise<string> => { const d = await tempDir(); dirs.push(d); return d }
  after(async () => { await removeDirs(dirs) })

  it('creates the key with mode 0600 in a 0700 dir and reuses it', async () => {
    const root = await dir()
    const dataDir = join(root, 'nested', 'data')
    const first = await loadOrCreateIdentity(dataDir)
    assert.equal(first.created, true)
    assert.equal((await stat(first.file)).mode & 0o777, 0o600)
    assert.equal((await stat(dataDir)).mode & 0o777, 0o700)
    const second = await loadOrCreateIdentity(dataDir)
    assert.equal(second.created, false)
    assert.equal(second.peerId, first.peerId)
    assert.ok(first.peerId.startsWith('12D3KooW'), 'Ed25519 peer id')
  })

  it('keeps the peer id across node restarts', async () => {
    const dataDir = await dir()
    const a = await createNode({ dataDir, plugins: [] })
    await a.start()
    const id = a.peerId
    await a.stop()
    const b = await createNode({ dataDir, plugins: [] })
    try {
      await b.start()
      assert.equal(b.peerId, id)
      assert.ok(b.addresses().every(x => x.endsWith(`/p2p/${id}`)))
    } finally {
      await b.stop()
    }
  })

  it('tightens a key file whose mode was loosened', async () => {
    const dataDir = await dir()
    const { file } = await loadOrCreateIdentity(dataDir)
    await chmod(file, 0o644)
    await loadOrCreateIdentity(dataDir)
    assert.equal((await stat(file)).mode & 0o777, 0o600)
  })

  it('rejects a corrupted key file with a typed error naming the file', async () => {
    const dataDir = await dir()
    const { file } = await loadOrCreateIdentity(dataDir)
    await writeFile(file, 'not a key')
    await assert.rejects(loadOrCreateIdentity(dataDir), (err: any) => {
      assert.ok(err instanceof IdentityKeyError)
      assert.equal(err.code, 'ERR_IDENTITY_KEY')
      assert.equal(err.file, file)
      assert.match(err.message, new RegExp(`identity key file ${file} is corrupted`))
      return true
    })
    await assert.rejects(createNode({ dataDir, plugins: [] }), IdentityKeyError)
    assert.equal(await readFile(file, 'utf8'), 'not a key', 'the bad file is left for the user to inspect')
  })

  it('rejects a data dir that is a file', async () => {
    const file = join(await dir(), 'file')
    await writeFile(file, '')
    await assert.rejects(loadOrCreateIdentity(file), DataDirError)
  })

  it('lets one node use a data dir at a time, and the second start leaves nothing running', async () => {
    const dataDir = await dir()
    const a = await createNode({ dataDir, plugins: [] })
    const b = await createNode({ dataDir, plugins: [] })
    await a.start()
    try {
      await assert.rejects(b.start(), (err: any) => err instanceof DataDirLockedError && err.pid === process.pid && err.message.includes(dataDir))
      assert.equal(b.isStarted(), false)
      assert.equal(b.libp2p.status, 'stopped')
      await assert.rejects(b.start(), NodeStateError)
      const s = a.status()
      assert.equal(s.started, true)
    } finally {
      await a.stop()
      await b.stop()
    }
    // released on stop
    const c = await createNode({ dataDir, plugins: [] })
    await c.start()
    await c.stop()
  })

  it('takes over the lock of a node that died', async () => {
    const dataDir = await dir()
    await mkdir(dataDir, { recursive: true })
    // a real pid that is gone: a child that has exited
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString()
    await writeFile(join(dataDir, 'node.lock'), `${dead}\n`)
    await writeFile(join(dataDir, 'control.sock'), '') // a stale socket file in the way
    const n = await createNode({ dataDir, plugins: [] })
    try {
      await n.start()
      assert.equal((await readFile(join(dataDir, 'node.lock'), 'utf8')).trim(), String(process.pid))
    } finally {
      await n.stop()
    }
  })
})
