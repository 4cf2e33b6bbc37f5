// @polkadot's logger writes straight to console.error/warn/log ("2026-... API-WS: disconnected from
// ws://...: 1006:: Abnormal Closure" every 2.5 s while an endpoint is down; "RPC-CORE: ..." for a
// failed request). A node that keeps working while its chain endpoint is away should not fill
// stderr with that: once installed, lines in that format go to the chain client's logger at debug
// level, and every other console line passes through untouched.
//
// Import this module before any @polkadot package: it also turns off @polkadot's warning about its
// ESM and CJS builds of one version both being loaded. That happens under mocha, which first tries
// require() on a test file (loading the CJS builds) and falls back to import() when a libp2p package
// refuses require(); the twins are the same version and the CJS ones go unused.
import type { Logger } from '../contracts/logger.ts'

process.env.POLKADOTJS_DISABLE_ESM_CJS_WARNING ??= '1'

/** The prefix @polkadot/util's logger puts after the date: an upper-case type such as "API-WS:", "RPC-CORE:", "API/INIT:". */
const TYPE = /^\s*[A-Z][A-Z0-9/_-]*:$/
/** formatDate's "CCYY-MM-DD HH:MM:SS". */
const DATE = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/

let target: Logger | undefined
let installed = false

function isPolkadotLine (args: unknown[]): boolean {
  return args.length >= 2 && typeof args[0] === 'string' && DATE.test(args[0]) && typeof args[1] === 'string' && TYPE.test(args[1])
}

/** Routes @polkadot's console lines to `log` (the latest caller's logger wins). Idempotent. */
export function routePolkadotConsole (log: Logger): void {
  target = log
  if (installed) return
  installed = true
  for (const method of ['error', 'warn', 'log'] as const) {
    const original = console[method].bind(console)
    console[method] = (...args: unknown[]) => {
      if (target != null && isPolkadotLine(args)) {
        const [, type, ...rest] = args
        target.debug(`${String(type).trim()} ${rest.map(v => v instanceof Error ? v.message : typeof v === 'string' ? v : JSON.stringify(v)).join(' ')}`)
        return
      }
      original(...args)
    }
  }
}
