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

// ---- prepared token shards (prepare.ts, shard-set.ts) ----

/** A text file is not valid UTF-8: which file, and the byte offset of the first bad byte (of the decompressed stream for .gz). */
export class InvalidUtf8Error extends ConfigError {
  override readonly code = 'ERR_INVALID_UTF8'
  constructor (readonly path: string, readonly offset: number) {
    super(`${path} is not valid UTF-8: bad byte sequence at byte offset ${offset}`)
  }
}

/** A JSONL line that is not a JSON object with a string text field (prepare refuses it rather than skipping). */
export class MalformedRecordError extends ConfigError {
  override readonly code = 'ERR_MALFORMED_RECORD'
  constructor (readonly where: string, field: string) {
    super(`${where}: not a JSON object with a string "${field}" field`)
  }
}

/** A vocabulary that does not fit the token width (uint16 holds ids < 65536). */
export class TokenWidthError extends ConfigError {
  override readonly code = 'ERR_TOKEN_WIDTH'
  constructor (readonly vocabSize: number, readonly width: number) {
    super(width === 2 || width === 4
      ? `a vocabulary of ${vocabSize} tokens does not fit ${width}-byte tokens (at most ${2 ** (8 * width)})`
      : `token width must be 2 or 4 bytes, got ${width}`)
  }
}

/** `data prepare --out` names a file or a non-empty folder. */
export class OutputNotEmptyError extends ConfigError {
  override readonly code = 'ERR_OUTPUT_NOT_EMPTY'
  constructor (readonly path: string) {
    super(`output ${path} exists and is not an empty folder; choose a new one`)
  }
}

/** A prepared dataset's manifest or shard is malformed or disagrees with itself. */
export class PreparedDataError extends ConfigError {
  override readonly code = 'ERR_PREPARED_DATA'
  constructor (readonly path: string, problem: string) {
    super(`prepared data ${path} ${problem}`)
  }
}

/** A shard's SHA-256 differs from the manifest's: the file was changed or damaged. */
export class ShardHashMismatchError extends ConfigError {
  override readonly code = 'ERR_SHARD_HASH'
  constructor (readonly path: string, readonly expected: string, readonly actual: string) {
    super(`shard ${path} has SHA-256 ${actual}, the manifest says ${expected}: the file was changed or damaged; prepare the data again`)
  }
}

/** This node's data is not the data the run pins. */
export class DataIdMismatchError extends ConfigError {
  override readonly code = 'ERR_DATA_ID'
  constructor (readonly expected: string, readonly actual: string | undefined, readonly path: string) {
    super(actual == null
      ? `the run trains on prepared data ${expected}, but ${path} is not a prepared folder: pass --data with the run's prepared folder`
      : `the run trains on prepared data ${expected}, but ${path} holds ${actual}: this node has other data and cannot join; pass --data with the run's prepared folder`)
  }
}
