// Wallets: a coldkey (holds funds, encrypted with a passphrase) and hotkeys (a node's signing
// identity on chain, unencrypted so the node starts unattended), sr25519 through @polkadot/keyring,
// ss58 format 42 (Bittensor's). The files' layout is in wallet-store.ts.
import { readFile } from 'node:fs/promises'
import { Keyring } from '@polkadot/keyring'
import type { KeyringPair, KeyringPair$Json } from '@polkadot/keyring/types'
import { hexToU8a, isHex } from '@polkadot/util'
import { cryptoIsReady, cryptoWaitReady, mnemonicGenerate, mnemonicValidate } from '@polkadot/util-crypto'
import { BadMnemonicError, WalletCorruptError, WalletError, WalletExistsError, WalletNotFoundError, WrongPassphraseError } from './errors.ts'
import { checkName, ensureWalletDirs, exists, hotkeyPath, listNames, readIfExists, walletPaths, walletsRoot, writeKeyFile } from './wallet-store.ts'
import { ensureDataDir } from '../node/data-dir.ts'

/** Bittensor's ss58 prefix. */
export const SS58_FORMAT = 42

/** How a key is given to import: a mnemonic, a 32-byte seed (0x hex), or the keyring's JSON (coldkey only). */
export type KeySource =
  | { mnemonic: string, seedHex?: undefined, json?: undefined }
  | { seedHex: string, mnemonic?: undefined, json?: undefined }
  | { json: string | KeyringPair$Json, jsonPassphrase?: string, mnemonic?: undefined, seedHex?: undefined }

export interface WalletInfo {
  readonly wallet: string
  /** ss58 address from coldkeypub.txt; null where the wallet holds hotkeys only. */
  readonly coldkey: string | null
  readonly hotkeys: ReadonlyArray<{ readonly name: string, readonly address: string }>
}

function keyring (): Keyring {
  return new Keyring({ type: 'sr25519', ss58Format: SS58_FORMAT })
}

/** A pair from a mnemonic or a seed; BadMnemonicError when it does not decode. */
function pairFrom (source: { mnemonic?: string, seedHex?: string }): KeyringPair {
  if (source.mnemonic !== undefined) {
    const words = source.mnemonic.trim().split(/\s+/).join(' ')
    if (!mnemonicValidate(words)) throw new BadMnemonicError('the mnemonic is not a valid BIP39 phrase (check the words and their order)')
    return keyring().addFromUri(words)
  }
  const seed = (source.seedHex ?? '').trim()
  const hex = seed.startsWith('0x') ? seed : `0x${seed}`
  if (!isHex(hex) || hexToU8a(hex).length !== 32) throw new BadMnemonicError('the seed must be 32 bytes as hex (64 hex digits, 0x optional)')
  return keyring().addFromSeed(hexToU8a(hex))
}

/** An unlocked pair from the keyring's JSON (from a file of another tool, e.g. polkadot.js). */
function pairFromJson (json: string | KeyringPair$Json, passphrase: string | undefined): KeyringPair {
  let parsed: KeyringPair$Json
  try {
    parsed = typeof json === 'string' ? JSON.parse(json) : json
  } catch (err) {
    throw new BadMnemonicError('the key JSON does not parse', { cause: err })
  }
  let pair: KeyringPair
  try {
    pair = keyring().createFromJson(parsed)
  } catch (err) {
    throw new BadMnemonicError(`not a keyring JSON: ${(err as Error).message}`, { cause: err })
  }
  try {
    pair.decodePkcs8(passphrase)
  } catch (err) {
    throw new BadMnemonicError('the key JSON\'s passphrase (--json-passphrase-file) does not decrypt it', { cause: err })
  }
  return pair
}

async function writeColdkey (dataDir: string, wallet: string, pair: KeyringPair, passphrase: string, overwrite: boolean): Promise<string> {
  if (typeof passphrase !== 'string' || passphrase.length === 0) throw new BadMnemonicError('a coldkey needs a non-empty passphrase')
  const paths = await ensureWalletDirs(dataDir, wallet)
  // refuse before the scrypt encryption (about 0.5 s); writeKeyFile still refuses a concurrent writer's
  if (!overwrite && await exists(paths.coldkey)) throw new WalletExistsError(`coldkey of wallet ${wallet}`, paths.coldkey)
  await writeKeyFile(paths.coldkey, JSON.stringify(pair.toJson(passphrase)), `coldkey of wallet ${wallet}`, overwrite)
  // derived from the coldkey: always rewritten with it
  await writeKeyFile(paths.coldkeypub, `${pair.address}\n`, 'coldkeypub.txt', true)
  return paths.coldkey
}

async function writeHotkey (dataDir: string, wallet: string, hotkey: string, pair: KeyringPair, overwrite: boolean): Promise<string> {
  checkName('hotkey', hotkey)
  await ensureWalletDirs(dataDir, wallet)
  const path = hotkeyPath(await ensureDataDir(dataDir), wallet, hotkey)
  // unencrypted on purpose (see the header): a node must start without a passphrase
  await writeKeyFile(path, JSON.stringify(pair.toJson()), `hotkey ${hotkey} of wallet ${wallet}`, overwrite)
  return path
}

function wordCount (words: number | undefined): 12 | 24 {
  if (words === undefined) return 12
  if (words !== 12 && words !== 24) throw new BadMnemonicError(`a mnemonic has 12 or 24 words, not ${String(words)}`)
  return words
}

/** Creates the wallet's coldkey; the mnemonic is returned once, never stored in clear. */
export async function createWallet (opts: { dataDir: string, wallet: string, passphrase: string, words?: 12 | 24, overwrite?: boolean }): Promise<{ coldkey: string, mnemonic: string, path: string }> {
  await cryptoWaitReady()
  const mnemonic = mnemonicGenerate(wordCount(opts.words))
  const pair = keyring().addFromUri(mnemonic)
  const path = await writeColdkey(opts.dataDir, opts.wallet, pair, opts.passphrase, opts.overwrite === true)
  return { coldkey: pair.address, mnemonic, path }
}

/** Creates a hotkey in the wallet (the wallet need not have a coldkey yet). */
export async function createHotkey (opts: { dataDir: string, wallet: string, hotkey: string, words?: 12 | 24, overwrite?: boolean }): Promise<{ hotkey: string, mnemonic: string, path: string }> {
  await cryptoWaitReady()
  const mnemonic = mnemonicGenerate(wordCount(opts.words))
  const pair = keyring().addFromUri(mnemonic)
  const path = await writeHotkey(opts.dataDir, opts.wallet, opts.hotkey, pair, opts.overwrite === true)
  return { hotkey: pair.address, mnemonic, path }
}

/** Imports a coldkey from a mnemonic, a seed or the keyring's JSON, stored encrypted with `passphrase`. */
export async function importColdkey (opts: { dataDir: string, wallet: string, passphrase: string, overwrite?: boolean } & KeySource): Promise<{ coldkey: string, path: string }> {
  await cryptoWaitReady()
  const pair = opts.json !== undefined ? pairFromJson(opts.json, opts.jsonPassphrase) : pairFrom(opts)
  const path = await writeColdkey(opts.dataDir, opts.wallet, pair, opts.passphrase, opts.overwrite === true)
  return { coldkey: pair.address, path }
}

/** Imports a hotkey from a mnemonic or a seed. */
export async function importHotkey (opts: { dataDir: string, wallet: string, hotkey: string, overwrite?: boolean } & ({ mnemonic: string, seedHex?: undefined } | { seedHex: string, mnemonic?: undefined })): Promise<{ hotkey: string, path: string }> {
  await cryptoWaitReady()
  const pair = pairFrom(opts)
  const path = await writeHotkey(opts.dataDir, opts.wallet, opts.hotkey, pair, opts.overwrite === true)
  return { hotkey: pair.address, path }
}

async function readKeyJson (path: string, what: string): Promise<KeyringPair$Json> {
  const text = await readIfExists(path)
  if (text === null) throw new WalletNotFoundError(what, path)
  try {
    const json = JSON.parse(text)
    if (typeof json?.encoded !== 'string' || typeof json?.address !== 'string') throw new Error('no encoded key or address')
    return json
  } catch (err) {
    throw new WalletCorruptError(path, `not the keyring's JSON (${(err as Error).message})`, { cause: err })
  }
}

/** The wallet's coldkey, unlocked; WrongPassphraseError when the passphrase does not decrypt it. */
export async function loadColdkey (dataDir: string, wallet: string, passphrase: string): Promise<KeyringPair> {
  await cryptoWaitReady()
  const path = walletPaths(dataDir, wallet).coldkey
  const json = await readKeyJson(path, `coldkey of wallet ${wallet}`)
  let pair: KeyringPair
  try {
    pair = keyring().createFromJson(json)
  } catch (err) {
    throw new WalletCorruptError(path, (err as Error).message, { cause: err })
  }
  try {
    pair.decodePkcs8(passphrase)
  } catch (err) {
    throw new WrongPassphraseError(path, { cause: err })
  }
  return pair
}

/** The wallet's hotkey, ready to sign. */
export async function loadHotkey (dataDir: string, wallet: string, hotkey: string): Promise<KeyringPair> {
  await cryptoWaitReady()
  const path = hotkeyPath(dataDir, wallet, hotkey)
  const json = await readKeyJson(path, `hotkey ${hotkey} of wallet ${wallet}`)
  try {
    const pair = keyring().createFromJson(json)
    pair.decodePkcs8()
    return pair
  } catch (err) {
    throw new WalletCorruptError(path, `the hotkey does not decode without a passphrase (${(err as Error).message}); ` +
      're-import it with `layerswarm wallet import --hotkey`', { cause: err })
  }
}

/** The address field of a key file's JSON, or null (no file, not JSON): the secret is not decoded. */
function publicAddress (text: string | null): string | null {
  if (text === null) return null
  try {
    const address = JSON.parse(text)?.address
    return typeof address === 'string' && address !== '' ? address : null
  } catch {
    return null
  }
}

/** One wallet's addresses (never secrets); WalletNotFoundError when it does not exist. */
export async function showWallet (dataDir: string, wallet: string): Promise<WalletInfo> {
  const paths = walletPaths(dataDir, wallet)
  if (!await exists(paths.dir)) throw new WalletNotFoundError(`wallet ${wallet}`, paths.dir)
  let coldkey = (await readIfExists(paths.coldkeypub))?.trim() ?? null
  // coldkeypub.txt lost (a crash between the two writes, a copy): the JSON's address field is public too
  if (coldkey === null || coldkey === '') coldkey = publicAddress(await readIfExists(paths.coldkey))
  const hotkeys: Array<{ name: string, address: string }> = []
  for (const name of await listNames(paths.hotkeys, 'file')) {
    // the address field is public; the key itself is not decoded here
    const address = publicAddress(await readFile(hotkeyPath(dataDir, wallet, name), 'utf8').catch(() => null))
    if (address !== null) hotkeys.push({ name, address })
  }
  return { wallet, coldkey, hotkeys }
}

/** Every wallet in the data dir, by name; [] when there is none. */
export async function listWallets (dataDir: string): Promise<WalletInfo[]> {
  const out: WalletInfo[] = []
  for (const name of await listNames(walletsRoot(dataDir), 'dir')) out.push(await showWallet(dataDir, name))
  return out
}

/** A dev account from a secret URI ('//Alice', a mnemonic with a derivation path): tests and local chains only. */
export function devKeyFromUri (uri: string): KeyringPair {
  if (!cryptoIsReady()) throw new WalletError('ERR_WALLET_CRYPTO_NOT_READY', 'devKeyFromUri needs the sr25519 wasm: await cryptoWaitReady() (or walletCryptoReady()) first')
  return keyring().addFromUri(uri)
}

/** Loads the sr25519 wasm once; the async API above does it itself. */
export async function walletCryptoReady (): Promise<void> {
  await cryptoWaitReady()
}
