// Logger implementation: human-readable lines or JSON lines on stderr, with a level filter.
// Scoped by component (`logger.forComponent('layerswarm:pipeline')`).
import type { Logger, LogLevel } from './contracts/logger.ts'

const LEVELS: Record<LogLevel, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, silent: 100 }

export type LogFormat = 'human' | 'json'

export interface LoggerOptions {
  level?: LogLevel
  format?: LogFormat
  component?: string
  /** Where lines go; defaults to process.stderr. */
  write?: (line: string) => void
}

export function isLogLevel (s: string): s is LogLevel {
  return Object.hasOwn(LEVELS, s)
}

export function createLogger (opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? 'info'
  const format = opts.format ?? 'human'
  const write = opts.write ?? ((line: string) => { process.stderr.write(line + '\n') })
  const threshold = LEVELS[level]

  const make = (component: string): Logger => {
    const emit = (lvl: Exclude<LogLevel, 'silent'>, msg: string, fields?: Record<string, unknown>): void => {
      if (LEVELS[lvl] < threshold) return
      const time = new Date().toISOString()
      if (format === 'json') {
        write(JSON.stringify({ time, level: lvl, component, msg, ...fields }))
      } else {
        const extra = fields != null && Object.keys(fields).length > 0
          ? ' ' + Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ')
          : ''
        write(`${time} ${lvl.toUpperCase().padEnd(5)} [${component}] ${msg}${extra}`)
      }
    }
    return {
      trace: (m, f) => { emit('trace', m, f) },
      debug: (m, f) => { emit('debug', m, f) },
      info: (m, f) => { emit('info', m, f) },
      warn: (m, f) => { emit('warn', m, f) },
      error: (m, f) => { emit('error', m, f) },
      forComponent: (name: string) => make(name)
    }
  }
  return make(opts.component ?? 'layerswarm')
}

/** A logger that drops everything (tests, library defaults). */
export const silentLogger: Logger = createLogger({ level: 'silent' })
