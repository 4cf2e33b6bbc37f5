// Every CLI command, one module each. A module exports `register(program)` adding its command.
import type { Command } from 'commander'

export type RegisterCommand = (program: Command) => void

export const commands: RegisterCommand[] = []
