// The wallets' files on disk, btcli-like, in the node's data dir:
//   <dataDir>/wallets/<wallet>/coldkey          the keyring's JSON, encrypted with the passphrase
//   <dataDir>/wallets/<wallet>/coldkeypub.txt   the coldkey's ss58 address (readable without the passphrase)
//   <dataDir>/wallets/<wallet>/hotkeys/<name>   the keyring's JSON, NOT encrypted: a node signs with its
//                                               hotkey and must start unattended (no passphrase prompt);
//                                               the hotkey holds no funds, the coldkey does
// Dirs are 0700 and files 0600 from their first byte; a file appears whole or not at all.
import { chmod, mkdir, readFile, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { ensureDataDir } from '../node/data-dir.ts'
import { writeFileAtomic } from '../files.ts'
import { WalletExistsError, WalletNameError } from './errors.ts'

const NAME = /^[A-Za-z0-9_-]{1,64}$/

/** Throws WalletNameError unless `name` is safe as one path component. */
export function checkName (kind: 'wallet' | 'hotkey', name: string): string {
  if (typeof name !== 'string' || !NAME.test(name)) throw new WalletNameError(kind, String(name))
  return name
}

export interface WalletPaths {
  readonly root: string
  readonly dir: string
  readonly coldkey: string
  readonly coldkeypub: string
  readonly hotkeys: string
}

/** The wallets folder of a data dir (not created). */
export function walletsRoot (dataDir: string): string {
  return join(dataDir, 'wallets')
}

export function walletPaths (dataDir: string, wallet: string): WalletPaths {
  const root = walletsRoot(dataDir)
  const dir = join(root, checkName('wallet', wallet))
  return { root, dir, coldkey: join(dir, 'coldkey'), coldkeypub: join(dir, 'coldkeypub.txt'), hotkeys: join(dir, 'hotkeys') }
}

export function hotkeyPath (dataDir: string, wallet: string, hotkey: string): string {
  return join(walletPaths(dataDir, wallet).hotkeys, checkName('hotkey', hotkey))
}

/** Creates the data dir, wallets/, the wallet's dir and its hotkeys/ dir, each 0700. */
export async function ensureWalletDirs (dataDir: string, wallet: string): Promise<WalletPaths> {
  const paths = walletPaths(await ensureDataDir(dataDir), wallet)
  for (const dir of [paths.root, paths.dir, paths.hotkeys]) {
    await mkdir(dir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'EEXIST') throw err })
    // the mode given to mkdir is masked by the umask, and a dir made by hand may be looser
    const st = await stat(dir)
    if ((st.mode & 0o777) !== 0o700 && st.uid === process.getuid?.()) await chmod(dir, 0o700)
  }
  return paths
}

/**
 * Writes `text` to `path` (mode 0600 from the first byte, synced). Without `overwrite` the file is
 * linked into place, which fails when it exists (also when a concurrent writer got there first):
 * WalletExistsError. With it, renamed over the old one.
 */
export async function writeKeyFile (path: string, text: string, what: string, overwrite: boolean): Promise<void> {
  try {
    await writeFileAtomic(path, text, { mode: 0o600, exclusive: !overwrite })
  } catch (err: any) {
    if (err?.code === 'EEXIST') throw new WalletExistsError(what, path)
    throw err
  }
}

/** True when `path` exists (any kind of entry). */
export async function exists (path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch (err: any) {
    if (err?.code === 'ENOENT') return false
    throw err
  }
}

/** The file's text, or null where it does not exist. */
export async function readIfExists (path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8')
  } catch (err: any) {
    if (err?.code === 'ENOENT') return null
    throw err
  }
}

/** Names in `dir` that are valid wallet/hotkey names (temp files and strays skipped), sorted; [] when absent. */
export async function listNames (dir: string, kind: 'dir' | 'file'): Promise<string[]> {
  let entries
  try {
    entries = await readdir(dir, { withFileTypes: true })
  } catch (err: any) {
    if (err?.code === 'ENOENT') return []
    throw err
  }
  return entries
    .filter(e => NAME.test(e.name) && (kind === 'dir' ? e.isDirectory() : e.isFile()))
    .map(e => e.name)
    .sort()
}
