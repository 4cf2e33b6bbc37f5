// Helpers every command shares: flag parsing with ConfigErrors that name the flag (the CLI exits 2
// on them), the logger a --log-level asks for, and what --model, --checkpoint and --backend values
// stand for.
import { readFile, stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import type { Logger } from '../core/contracts/logger.ts'
import { ConfigError } from '../core/errors.ts'
import { createLogger, isLogLevel } from '../core/logger.ts'
import { modelPreset, parseModelConfig, type ModelConfig } from '../core/model/config.ts'
import { withComputeBackend, type BackendChoice } from '../core/node/backend-choice.ts'
import { latestCheckpoint } from '../core/train/checkpoint.ts'

/**
 * Runs `fn` with the backend a --backend value names (core/node/backend-choice.ts: 'cpu', a plugin
 * name, a ./path or a package), started alone in a plugin host with --threads and `options`, and
 * stops it whatever happens.
 */
export async function withBackend<R> (backend: string | BackendChoice, threads: number | undefined, logger: Logger, fn: (backend: ComputeBackend) => Promise<R>, options: Record<string, unknown> = {}): Promise<R> {
  return await withComputeBackend(backend, { logger, options: { ...options, ...(threads != null ? { threads } : {}) } }, fn)
}

/** A preset takes its vocabulary size from the tokenizer; a JSON file states its own. */
export async function resolveModelConfig (model: string, vocabSize: number): Promise<ModelConfig> {
  if (model.endsWith('.json')) {
    let text: string
    try {
      text = await readFile(resolve(model), 'utf8')
    } catch (err) {
      throw new ConfigError(`cannot read model config ${model}: ${(err as Error).message}`, { cause: err })
    }
    return parseModelConfig(text, model)
  }
  return { ...modelPreset(model), vocabSize }
}

export async function resolveCheckpointPath (p: string): Promise<string> {
  const abs = resolve(p)
  const info = await stat(abs).catch(() => undefined)
  if (info?.isDirectory() === true) {
    const latest = await latestCheckpoint(abs)
    if (latest == null) throw new ConfigError(`no step-NNNNNN.safetensors checkpoint in ${p}`)
    return latest
  }
  return abs
}

export function makeLogger (level: string | undefined): Logger {
  const l = level ?? 'info'
  if (!isLogLevel(l)) throw new ConfigError(`log level "${l}" is not one of trace, debug, info, warn, error, silent`)
  return createLogger({ level: l })
}

export function intFlag (name: string, v: string | undefined, min: number): number {
  const n = Number(v)
  if (v == null || v.trim() === '' || !Number.isSafeInteger(n) || n < min) throw new ConfigError(`${name} must be an integer >= ${min}, got ${JSON.stringify(v)}`)
  return n
}

export function numFlag (name: string, v: string | undefined, min: number): number {
  const n = Number(v)
  if (v == null || v.trim() === '' || !Number.isFinite(n) || n < min) throw new ConfigError(`${name} must be a number >= ${min}, got ${JSON.stringify(v)}`)
  return n
}
