// Node identity: an Ed25519 libp2p private key persisted (protobuf bytes) in the data dir, mode 0600.
// Created on first use, so a node keeps its peer id across restarts.
import { open, readFile, link, unlink, chmod, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { DATA_DIR_FILES, ensureDataDir } from './data-dir.ts'
import { DataDirError, IdentityKeyError } from './node-errors.ts'

export interface Identity {
  readonly privateKey: PrivateKey
  readonly peerId: string
  /** Absolute path of the key file. */
  readonly file: string
  /** True when this call created the key. */
  readonly created: boolean
}

export async function loadOrCreateIdentity (dataDir: string): Promise<Identity> {
  const dir = await ensureDataDir(dataDir)
  const file = join(dir, DATA_DIR_FILES.identity)
  let bytes: Uint8Array | undefined
  try {
    bytes = await readFile(file)
  } catch (err: any) {
    if (err?.code !== 'ENOENT') throw new DataDirError(dir, `cannot read ${file}: ${err?.message}`, { cause: err })
  }
  if (bytes != null) {
    let privateKey: PrivateKey
    try {
      privateKey = privateKeyFromProtobuf(bytes)
    } catch (err) {
      throw new IdentityKeyError(file, { cause: err })
    }
    // tighten a key file whose mode was loosened by hand or by a copy
    const st = await stat(file)
    if ((st.mode & 0o077) !== 0) await chmod(file, 0o600)
    return { privateKey, peerId: peerIdFromPrivateKey(privateKey).toString(), file, created: false }
  }

  const privateKey = await generateKeyPair('Ed25519')
  // temp file + link: a crash never leaves a half-written key, 'wx' + 0600 from the first byte, and
  // link (unlike rename) fails when a concurrent process created the key first: then use theirs
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`
  try {
    const fh = await open(tmp, 'wx', 0o600)
    try {
      await fh.writeFile(privateKeyToProtobuf(privateKey))
      await fh.sync()
    } finally {
      await fh.close()
    }
    await link(tmp, file)
    await unlink(tmp)
  } catch (err: any) {
    await unlink(tmp).catch(() => {})
    if (err?.code === 'EEXIST') return await loadOrCreateIdentity(dir)
    throw new DataDirError(dir, `cannot write ${file}: ${err?.message}`, { cause: err })
  }
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey).toString(), file, created: true }
}
