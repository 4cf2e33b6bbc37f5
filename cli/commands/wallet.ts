// `layerswarm wallet create|import|show|list`: the coldkey and hotkeys in the data dir's wallets/
// folder (core/chain/wallet.ts). Mnemonics are printed once, on creation; show and list print
// addresses only. The coldkey's passphrase comes from --passphrase-file, $LAYERSWARM_WALLET_PASSPHRASE
// or a prompt on a terminal (never a flag: it would sit in the shell history and the process list).
import type { Command } from 'commander'
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { ConfigError } from '../../core/errors.ts'
import { defaultDataDir } from '../../core/node/data-dir.ts'
import {
  createHotkey, createWallet, importColdkey, importHotkey, listWallets, showWallet, type WalletInfo
} from '../../core/chain/wallet.ts'
import { checkName, exists, hotkeyPath, walletPaths } from '../../core/chain/wallet-store.ts'
import { WalletExistsError } from '../../core/chain/errors.ts'
import { ENV } from '../config.ts'

export const WALLET_PASSPHRASE_ENV = 'LAYERSWARM_WALLET_PASSPHRASE'

const MNEMONIC_WARNING = 'Write the mnemonic(s) below down and keep them offline: they are shown only now, ' +
  'and they are the only way to restore the keys. Anyone who has a mnemonic controls its key.'

/** A secret file's text: its first line, or the whole text without its trailing newline. */
async function readSecretFile (file: string, what: string): Promise<string> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err: any) {
    throw new ConfigError(`cannot read the ${what} file ${file}: ${err?.message}`, { cause: err })
  }
  const value = text.replace(/\r?\n$/, '')
  if (value.length === 0) throw new ConfigError(`the ${what} file ${file} is empty`)
  return value
}

/** Reads a line from the terminal without echoing it (stdin in raw mode). */
async function promptHidden (question: string): Promise<string> {
  const stdin = process.stdin
  process.stderr.write(question)
  stdin.setRawMode(true)
  stdin.resume()
  stdin.setEncoding('utf8')
  try {
    return await new Promise<string>((resolve, reject) => {
      let line = ''
      const onData = (chunk: string): void => {
        for (const ch of chunk) {
          if (ch === '\r' || ch === '\n') {
            stdin.off('data', onData)
            resolve(line)
            return
          }
          if (ch === '\u0003' || ch === '\u0004') {
            stdin.off('data', onData)
            reject(new ConfigError('passphrase prompt cancelled'))
            return
          }
          if (ch === '\u007f' || ch === '\b') line = line.slice(0, -1)
          else line += ch
        }
      }
      stdin.on('data', onData)
    })
  } finally {
    stdin.setRawMode(false)
    stdin.pause()
    process.stderr.write('\n')
  }
}

/**
 * The coldkey's passphrase: --passphrase-file, then $LAYERSWARM_WALLET_PASSPHRASE, then a prompt on
 * a terminal (asked twice when `confirm`, for a new coldkey); a ConfigError when none is available.
 * Exported for the chain commands, which unlock the coldkey to register and stake.
 */
export async function readPassphrase (flags: { passphraseFile?: string }, confirm: boolean): Promise<string> {
  if (flags.passphraseFile !== undefined) return await readSecretFile(flags.passphraseFile, 'passphrase')
  const env = process.env[WALLET_PASSPHRASE_ENV]
  if (env !== undefined && env !== '') return env
  if (process.stdin.isTTY !== true || process.stderr.isTTY !== true) {
    throw new ConfigError(`the coldkey needs a passphrase and there is no terminal to ask on: pass --passphrase-file FILE or set $${WALLET_PASSPHRASE_ENV}`)
  }
  const first = await promptHidden('coldkey passphrase: ')
  if (first === '') throw new ConfigError('the passphrase must not be empty')
  if (confirm && await promptHidden('repeat the passphrase: ') !== first) throw new ConfigError('the two passphrases differ')
  return first
}

function dataDirOf (flags: { dataDir?: string }): string {
  return resolve(flags.dataDir ?? process.env[ENV.dataDir] ?? defaultDataDir())
}

function parseWords (value: string | undefined): 12 | 24 {
  if (value === undefined || value === '12') return 12
  if (value === '24') return 24
  throw new ConfigError(`--words must be 12 or 24, not ${JSON.stringify(value)}`)
}

function walletLines (w: WalletInfo): string[] {
  return [
    `wallet   ${w.wallet}`,
    `coldkey  ${w.coldkey ?? '(none)'}`,
    `hotkeys  ${w.hotkeys.length === 0 ? '(none)' : ''}`.trimEnd(),
    ...w.hotkeys.map(h => `  ${h.name.padEnd(16)} ${h.address}`)
  ]
}

interface CreateFlags { wallet: string, hotkey: string, words?: string, coldkey: boolean, dataDir?: string, passphraseFile?: string, json?: boolean }

async function create (flags: CreateFlags): Promise<void> {
  const dataDir = dataDirOf(flags)
  checkName('wallet', flags.wallet)
  checkName('hotkey', flags.hotkey)
  const words = parseWords(flags.words)
  const paths = walletPaths(dataDir, flags.wallet)
  // refuse before creating anything or asking for a passphrase (createHotkey refuses as well)
  const hotPath = hotkeyPath(dataDir, flags.wallet, flags.hotkey)
  if (await exists(hotPath)) throw new WalletExistsError(`hotkey ${flags.hotkey} of wallet ${flags.wallet}`, hotPath)
  let cold: { address: string, path: string, mnemonic?: string, created: boolean } | null = null
  if (flags.coldkey) {
    if (await exists(paths.coldkey)) {
      cold = { address: (await showWallet(dataDir, flags.wallet)).coldkey ?? '', path: paths.coldkey, created: false }
    } else {
      const passphrase = await readPassphrase(flags, true)
      const w = await createWallet({ dataDir, wallet: flags.wallet, passphrase, words })
      cold = { address: w.coldkey, path: w.path, mnemonic: w.mnemonic, created: true }
    }
  }
  const hot = await createHotkey({ dataDir, wallet: flags.wallet, hotkey: flags.hotkey, words })
  if (flags.json === true) {
    process.stdout.write(JSON.stringify({
      wallet: flags.wallet,
      coldkey: cold,
      hotkey: { name: flags.hotkey, address: hot.hotkey, path: hot.path, mnemonic: hot.mnemonic },
      warning: MNEMONIC_WARNING
    }) + '\n')
    return
  }
  const lines: string[] = [`wallet   ${flags.wallet}`]
  if (cold != null) lines.push(`coldkey  ${cold.address}  ${cold.created ? `created, encrypted in ${cold.path}` : '(exists, kept)'}`)
  lines.push(`hotkey   ${flags.hotkey} ${hot.hotkey}  created in ${hot.path}`, '', MNEMONIC_WARNING)
  if (cold?.mnemonic !== undefined) lines.push(`coldkey mnemonic: ${cold.mnemonic}`)
  lines.push(`hotkey mnemonic:  ${hot.mnemonic}`)
  process.stdout.write(lines.join('\n') + '\n')
}

interface ImportFlags {
  wallet: string, coldkey?: boolean, hotkey?: string, mnemonicFile?: string, seed?: string, jsonFile?: string,
  jsonPassphraseFile?: string, passphraseFile?: string, dataDir?: string, json?: boolean
}

async function importKey (flags: ImportFlags): Promise<void> {
  const dataDir = dataDirOf(flags)
  checkName('wallet', flags.wallet)
  if ((flags.coldkey === true) === (flags.hotkey !== undefined)) throw new ConfigError('wallet import needs one of --coldkey or --hotkey NAME')
  const sources = [flags.mnemonicFile, flags.seed, flags.jsonFile].filter(s => s !== undefined)
  if (sources.length !== 1) throw new ConfigError('wallet import needs one of --mnemonic-file FILE, --seed HEX or --json-file FILE')
  if (flags.hotkey !== undefined) {
    checkName('hotkey', flags.hotkey)
    if (flags.jsonFile !== undefined) throw new ConfigError('--json-file imports a coldkey only; import a hotkey from --mnemonic-file or --seed')
  }
  const mnemonic = flags.mnemonicFile !== undefined ? await readSecretFile(flags.mnemonicFile, 'mnemonic') : undefined
  let result: { kind: 'coldkey' | 'hotkey', name?: string, address: string, path: string }
  if (flags.hotkey !== undefined) {
    const r = mnemonic !== undefined
      ? await importHotkey({ dataDir, wallet: flags.wallet, hotkey: flags.hotkey, mnemonic })
      : await importHotkey({ dataDir, wallet: flags.wallet, hotkey: flags.hotkey, seedHex: flags.seed as string })
    result = { kind: 'hotkey', name: flags.hotkey, address: r.hotkey, path: r.path }
  } else {
    // refuse before asking for passphrases (importColdkey refuses as well)
    const coldkeyPath = walletPaths(dataDir, flags.wallet).coldkey
    if (await exists(coldkeyPath)) throw new WalletExistsError(`coldkey of wallet ${flags.wallet}`, coldkeyPath)
    let r
    if (flags.jsonFile !== undefined) {
      const json = await readSecretFile(flags.jsonFile, 'key JSON')
      const jsonPassphrase = flags.jsonPassphraseFile !== undefined ? await readSecretFile(flags.jsonPassphraseFile, 'key JSON passphrase') : undefined
      const passphrase = await readPassphrase(flags, true)
      r = await importColdkey({ dataDir, wallet: flags.wallet, passphrase, json, jsonPassphrase })
    } else {
      const passphrase = await readPassphrase(flags, true)
      r = mnemonic !== undefined
        ? await importColdkey({ dataDir, wallet: flags.wallet, passphrase, mnemonic })
        : await importColdkey({ dataDir, wallet: flags.wallet, passphrase, seedHex: flags.seed as string })
    }
    result = { kind: 'coldkey', address: r.coldkey, path: r.path }
  }
  if (flags.json === true) {
    process.stdout.write(JSON.stringify({ wallet: flags.wallet, ...result }) + '\n')
  } else {
    process.stdout.write(`imported ${result.kind}${result.name !== undefined ? ` ${result.name}` : ''} ${result.address} into ${result.path}\n`)
  }
}

export function register (program: Command): void {
  const wallet = program.command('wallet')
    .description('create, import and show the coldkey and hotkeys used on a Bittensor chain')
  const dataDirHelp = `data dir (default: $${ENV.dataDir} or ~/.layerswarm); wallets live in <data dir>/wallets`
  const passHelp = `file holding the coldkey's passphrase (else $${WALLET_PASSPHRASE_ENV}, else a prompt on a terminal)`

  wallet.command('create')
    .description('create a wallet\'s coldkey (if missing) and a hotkey; prints their mnemonics once')
    .option('--wallet <name>', 'wallet name', 'default')
    .option('--hotkey <name>', 'hotkey name', 'default')
    .option('--words <n>', 'mnemonic length: 12 or 24', '12')
    .option('--no-coldkey', 'only add the hotkey (no coldkey, no passphrase needed)')
    .option('--passphrase-file <file>', passHelp)
    .option('--data-dir <dir>', dataDirHelp)
    .option('--json', 'print one JSON object (it holds the mnemonics)')
    .action(create)

  wallet.command('import')
    .description('import a coldkey or a hotkey from a mnemonic, a seed or a key JSON (coldkey only)')
    .option('--wallet <name>', 'wallet name', 'default')
    .option('--coldkey', 'import the wallet\'s coldkey (stored encrypted)')
    .option('--hotkey <name>', 'import a hotkey under this name')
    .option('--mnemonic-file <file>', 'file holding the BIP39 mnemonic')
    .option('--seed <hex>', 'the 32-byte secret seed as hex')
    .option('--json-file <file>', 'a polkadot.js / keyring JSON key file (coldkey only)')
    .option('--json-passphrase-file <file>', 'file holding the passphrase of --json-file')
    .option('--passphrase-file <file>', passHelp)
    .option('--data-dir <dir>', dataDirHelp)
    .option('--json', 'print one JSON object')
    .action(importKey)

  wallet.command('show')
    .description('print a wallet\'s addresses (never secrets)')
    .option('--wallet <name>', 'wallet name', 'default')
    .option('--data-dir <dir>', dataDirHelp)
    .option('--json', 'print one JSON object: {"wallet", "coldkey", "hotkeys": [{"name", "address"}]}')
    .action(async (flags: { wallet: string, dataDir?: string, json?: boolean }) => {
      const info = await showWallet(dataDirOf(flags), flags.wallet)
      process.stdout.write(flags.json === true ? JSON.stringify(info) + '\n' : walletLines(info).join('\n') + '\n')
    })

  wallet.command('list')
    .description('print every wallet\'s addresses (never secrets)')
    .option('--data-dir <dir>', dataDirHelp)
    .option('--json', 'print one JSON array of {"wallet", "coldkey", "hotkeys"}')
    .action(async (flags: { dataDir?: string, json?: boolean }) => {
      const dir = dataDirOf(flags)
      const all = await listWallets(dir)
      if (flags.json === true) {
        process.stdout.write(JSON.stringify(all) + '\n')
      } else if (all.length === 0) {
        process.stdout.write(`no wallets in ${dir}; create one with \`layerswarm wallet create\`\n`)
      } else {
        process.stdout.write(all.map(w => walletLines(w).join('\n')).join('\n\n') + '\n')
      }
    })
}
