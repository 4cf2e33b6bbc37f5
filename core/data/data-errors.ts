// Typed errors of the data pipeline, one class per condition. Bad paths, empty data and bad
// arguments are user input problems (ConfigError: the CLI exits 2).
import { ConfigError } from '../errors.ts'

/** The dataset path does not exist. */
export class DatasetNotFoundError extends ConfigError {
  override readonly code = 'ERR_DATASET_NOT_FOUND'
  constructor (readonly path: string) {
    super(`dataset path ${path} does not exist`)
  }
}

/** A folder holds no file the reader understands (.txt, .text, .jsonl, .ndjson, optionally .gz). */
export class NoDataFilesError extends ConfigError {
  override readonly code = 'ERR_NO_DATA_FILES'
  constructor (readonly path: string) {
    super(`no data files under ${path} (looked for .txt, .text, .jsonl, .ndjson, each optionally .gz)`)
  }
}

/** Reading finished without one usable document (empty files, or only malformed JSONL lines). */
export class NoDocumentsError extends ConfigError {
  override readonly code = 'ERR_NO_DOCUMENTS'
  constructor (readonly path: string, readonly malformedLines: number, firstMalformed?: string) {
    super(`no usable text in ${path}` + (malformedLines > 0
      ? ` (${malformedLines} malformed JSONL line${malformedLines === 1 ? '' : 's'} skipped, first at ${firstMalformed ?? '?'})`
      : ''))
  }
}

/** A data file could not be read or decompressed. */
export class DatasetReadError extends ConfigError {
  override readonly code = 'ERR_DATASET_READ'
  constructor (readonly path: string, cause: unknown) {
    super(`cannot read ${path}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause })
  }
}

/** A split has fewer tokens than one window of T+1 (or than the request needs). */
export class CorpusTooSmallError extends ConfigError {
  override readonly code = 'ERR_CORPUS_TOO_SMALL'
  constructor (what: string, tokens: number, needed: number) {
    super(`${what} has ${tokens} tokens, fewer than the ${needed} needed`)
  }
}

/** An argument of a data function is out of range (batch size, fraction, step, ...). */
export class DataArgumentError extends ConfigError {
  override readonly code = 'ERR_DATA_ARGUMENT'
  constructor (message: string) {
    super(message)
  }
}

/** An unknown tokenizer name. */
export class UnknownTokenizerError extends ConfigError {
  override readonly code = 'ERR_UNKNOWN_TOKENIZER'
  constructor (readonly tokenizer: string, known: readonly string[]) {
    super(`unknown tokenizer "${tokenizer}"; known: ${known.join(', ')}`)
  }
}
