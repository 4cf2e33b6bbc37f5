// Every CLI command, one module each. A module exports `register(program)` adding its command.
import type { Command } from 'commander'
import { register as start } from './start.ts'
import { register as status } from './status.ts'
import { register as keys } from './keys.ts'
import { register as train } from './train.ts'
import { register as sample } from './sample.ts'
import { register as bench } from './bench.ts'
import { register as demo } from './demo.ts'
import { register as simulate } from './simulate.ts'
import { register as wallet } from './wallet.ts'
import { register as chain } from './chain.ts'
import { register as data } from './data.ts'
import { register as exportCmd } from './export.ts'
import { register as join } from './join.ts'

export type RegisterCommand = (program: Command) => void

export const commands: RegisterCommand[] = [
  start,
  status,
  keys,
  train,
  sample,
  bench,
  demo,
  simulate,
  wallet,
  chain,
  data,
  exportCmd,
  join
]
