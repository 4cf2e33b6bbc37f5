// A logger that also tells a listener about every call, whatever its level, and then passes it on:
// how `layerswarm join` hears of the moments it narrates (the scheduler's choice, a state download,
// the stage starting) without the parts that log them knowing about it.
import type { Logger, LogLevel } from '../contracts/logger.ts'

export interface LogEvent {
  readonly component: string
  readonly level: Exclude<LogLevel, 'silent'>
  readonly msg: string
  readonly fields: Readonly<Record<string, unknown>>
}

export function tapLogger (base: Logger, listener: (e: LogEvent) => void, component = 'layerswarm'): Logger {
  const tell = (level: LogEvent['level'], msg: string, fields?: Record<string, unknown>): void => {
    try {
      listener({ component, level, msg, fields: fields ?? {} })
    } catch {
      // the narration must never break the part that logs
    }
  }
  return {
    trace: (m, f) => { tell('trace', m, f); base.trace(m, f) },
    debug: (m, f) => { tell('debug', m, f); base.debug(m, f) },
    info: (m, f) => { tell('info', m, f); base.info(m, f) },
    warn: (m, f) => { tell('warn', m, f); base.warn(m, f) },
    error: (m, f) => { tell('error', m, f); base.error(m, f) },
    forComponent: name => tapLogger(base.forComponent(name), listener, name)
  }
}
