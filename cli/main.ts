// CLI entry: builds the commander program from one module per command (cli/commands/*.ts) and
// maps typed errors to exit codes (ConfigError and usage errors: 2; other failures: 1).
import '../core/polyfills.ts'
import { Command, CommanderError } from 'commander'
import { ConfigError, LayerswarmError } from '../core/errors.ts'
import { commands } from './commands/index.ts'
import { pluginModuleHint } from './plugin-hints.ts'

export async function main (argv: string[]): Promise<number> {
  const program = new Command('layerswarm')
    .description('Pure peer-to-peer node for decentralized pre-training of language models')
    .version(process.env.npm_package_version ?? '0.1.0')
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)')
  for (const register of commands) register(program)
  program.commands.forEach(c => c.exitOverride())

  try {
    await program.parseAsync(argv, { from: 'user' })
    return typeof process.exitCode === 'number' ? process.exitCode : 0
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end through here with exit code 0
      return err.exitCode === 0 ? 0 : 2
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`layerswarm: ${err.message}${pluginModuleHint(err)}\n`)
      return 2
    }
    if (err instanceof LayerswarmError) {
      process.stderr.write(`layerswarm: ${err.message} (${err.code})${pluginModuleHint(err)}\n`)
      return 1
    }
    process.stderr.write(`layerswarm: ${(err as Error)?.stack ?? String(err)}\n`)
    return 1
  }
}
