// Where training data enters: plain-text and JSONL files, or folders of them, read as a stream of
// documents. Files are read in chunks (never whole) and each document is assigned to the training
// or the held-out split by a hash of its text.
//
// Documents:
//   - JSONL (.jsonl, .ndjson): one record per line, its `textField` (default 'text') string. Blank
//     lines are skipped; lines that are not JSON objects with a string field are skipped and counted.
//   - plain text (.txt, .text, or any explicitly named file): paragraphs, i.e. runs of lines
//     separated by blank lines. Paragraphs of one file are joined by one blank line in the token
//     stream and the file ends with end-of-text; each JSONL record ends with end-of-text.
//   - '.gz' after either extension: gunzipped while streaming.
// Normalization: CRLF -> LF, runs of blank lines -> one, NUL characters dropped (the byte
// tokenizer's end-of-text is NUL).
// Folders are walked recursively in sorted order of their relative paths (code-unit order, '/'
// separators), skipping names that start with '.' and files of other extensions.
import { createReadStream, type Dirent } from 'node:fs'
import { readdir, stat } from 'node:fs/promises'
import path from 'node:path'
import { pipeline, type Readable } from 'node:stream'
import { createGunzip } from 'node:zlib'
import { AbortError } from '../errors.ts'
import { DatasetNotFoundError, DatasetReadError, DataArgumentError, NoDataFilesError, NoDocumentsError } from './data-errors.ts'
import { cyrb53 } from './prng.ts'

export type DataFormat = 'text' | 'jsonl'

export interface DataFile {
  readonly path: string
  readonly format: DataFormat
  readonly gzip: boolean
}

export interface ReadOptions {
  /** JSONL field holding the text; default 'text'. */
  textField?: string
  /** Share of documents held out for evaluation, in [0, 1); default 0.01. */
  heldOutFraction?: number
  /** Salt of the held-out hash; default 0. Every node of a run must use the same. */
  splitSeed?: number
  /** Bytes per read from disk; default 64 KiB. */
  chunkSize?: number
  /** Longest document (chars) held in memory; longer paragraphs are cut into pieces. Default 1 Mi. */
  maxDocumentChars?: number
  /** Longest JSONL line (chars); longer lines are skipped as malformed without being held. Default 64 Mi. */
  maxLineChars?: number
  signal?: AbortSignal
}

export interface Document {
  /** The text as it enters the token stream, separator included (see the header). */
  readonly text: string
  /** Whether end-of-text follows this document (end of a JSONL record or of a text file). */
  readonly eot: boolean
  readonly heldOut: boolean
  /** File it came from and its line number (1-based) where the document starts. */
  readonly source: string
  readonly line: number
}

export interface ReadStats {
  files: number
  documents: number
  heldOutDocuments: number
  malformedLines: number
  /** 'file:line' of the first malformed JSONL line. */
  firstMalformed?: string
  /** Bytes read from disk (compressed size for .gz). */
  bytes: number
}

export function newReadStats (): ReadStats {
  return { files: 0, documents: 0, heldOutDocuments: 0, malformedLines: 0, bytes: 0 }
}

const DEFAULTS = {
  textField: 'text',
  heldOutFraction: 0.01,
  splitSeed: 0,
  chunkSize: 64 * 1024,
  maxDocumentChars: 1 << 20,
  maxLineChars: 64 << 20
}

/** How a file name is read, or undefined for a file a folder walk skips. */
export function classifyFile (file: string): DataFile | undefined {
  const lower = file.toLowerCase()
  const gzip = lower.endsWith('.gz')
  const ext = path.extname(gzip ? lower.slice(0, -3) : lower)
  if (ext === '.jsonl' || ext === '.ndjson') return { path: file, format: 'jsonl', gzip }
  if (ext === '.txt' || ext === '.text') return { path: file, format: 'text', gzip }
  return undefined
}

/** The data files of a path: the file itself (read as text unless its name says JSONL), or a folder's files in sorted order. */
export async function listDataFiles (dataPath: string): Promise<DataFile[]> {
  const info = await stat(dataPath).catch(() => undefined)
  if (info == null) throw new DatasetNotFoundError(dataPath)
  if (!info.isDirectory()) {
    const file = classifyFile(dataPath)
    return [file ?? { path: dataPath, format: 'text', gzip: dataPath.toLowerCase().endsWith('.gz') }]
  }
  const found: string[] = []
  const walk = async (rel: string): Promise<void> => {
    let entries: Dirent[]
    try {
      entries = await readdir(path.join(dataPath, rel), { withFileTypes: true })
    } catch (err) {
      throw new DatasetReadError(path.join(dataPath, rel), err)
    }
    for (const e of entries) {
      if (e.name.startsWith('.')) continue
      const child = rel === '' ? e.name : `${rel}/${e.name}`
      // Symlinked folders are not followed (no cycles); symlinked files are read.
      if (e.isDirectory()) await walk(child)
      else if ((e.isFile() || e.isSymbolicLink()) && classifyFile(e.name) != null) found.push(child)
    }
  }
  await walk('')
  found.sort((a, b) => a < b ? -1 : a > b ? 1 : 0)
  if (found.length === 0) throw new NoDataFilesError(dataPath)
  return found.map(rel => classifyFile(path.join(dataPath, rel)) as DataFile)
}

/**
 * Stream the documents of a file or folder. `stats` is updated as reading goes. Throws
 * DatasetNotFoundError / NoDataFilesError before the first document, and NoDocumentsError at the
 * end when nothing usable was found.
 */
export async function * readDocuments (dataPath: string, opts: ReadOptions = {}, stats: ReadStats = newReadStats()): AsyncGenerator<Document> {
  const o = { ...DEFAULTS, ...definedOnly(opts) }
  if (!(o.heldOutFraction >= 0 && o.heldOutFraction < 1)) throw new DataArgumentError(`heldOutFraction must be in [0, 1), got ${o.heldOutFraction}`)
  for (const k of ['chunkSize', 'maxDocumentChars', 'maxLineChars'] as const) {
    if (!Number.isSafeInteger(o[k]) || o[k] < 1) throw new DataArgumentError(`${k} must be a positive integer, got ${o[k]}`)
  }
  const isHeldOut = (content: string): boolean => cyrb53(content, o.splitSeed) / 2 ** 53 < o.heldOutFraction
  const files = await listDataFiles(dataPath)
  for (const file of files) {
    stats.files++
    const docs = file.format === 'jsonl' ? jsonlDocuments(file, o, stats, isHeldOut) : textDocuments(file, o, stats, isHeldOut)
    for await (const doc of docs) {
      stats.documents++
      if (doc.heldOut) stats.heldOutDocuments++
      yield doc
    }
  }
  if (stats.documents === 0) throw new NoDocumentsError(dataPath, stats.malformedLines, stats.firstMalformed)
}

type Resolved = typeof DEFAULTS & { signal?: AbortSignal }

interface Line {
  text: string
  /** A piece of a longer line; more of it follows. */
  partial: boolean
  /** Earlier pieces of this line were yielded already. */
  cont: boolean
  number: number
}

/** Lines of a file, read in chunks; '\r' before '\n' and NUL are dropped; lines longer than `max` come in pieces. */
async function * readLines (file: DataFile, o: Resolved, max: number, stats: ReadStats): AsyncGenerator<Line> {
  const raw = createReadStream(file.path, { highWaterMark: o.chunkSize })
  const input: Readable = file.gzip ? pipeline(raw, createGunzip(), () => {}) : raw
  const decoder = new TextDecoder('utf-8')
  let carry = ''
  let number = 1
  let continued = false // the current line already had pieces yielded
  try {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      if (o.signal?.aborted === true) throw new AbortError('dataset read was aborted')
      carry += decoder.decode(chunk, { stream: true }).replaceAll('\0', '')
      let start = 0
      for (let nl = carry.indexOf('\n'); nl >= 0; nl = carry.indexOf('\n', start)) {
        yield { text: stripCR(carry.slice(start, nl)), partial: false, cont: continued, number }
        start = nl + 1
        number++
        continued = false
      }
      carry = carry.slice(start)
      while (carry.length > max) {
        yield { text: carry.slice(0, max), partial: true, cont: continued, number }
        carry = carry.slice(max)
        continued = true
      }
    }
    carry += decoder.decode().replaceAll('\0', '')
    if (carry.length > 0 || continued) yield { text: stripCR(carry), partial: false, cont: continued, number }
  } catch (err) {
    if (err instanceof AbortError) throw err
    throw new DatasetReadError(file.path, err)
  } finally {
    stats.bytes += raw.bytesRead
    raw.destroy()
  }
}

function stripCR (line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line
}

/** Paragraphs of a text file. One finished paragraph is held back until we know whether it is the file's last (which takes eot). */
async function * textDocuments (file: DataFile, o: Resolved, stats: ReadStats, isHeldOut: (s: string) => boolean): AsyncGenerator<Document> {
  let lines: string[] = []
  let size = 0
  let firstLine = 0
  let lineOpen = false // the last entry of `lines` is an unfinished line
  let pending: { content: string, sep: string, line: number } | undefined
  const emit = (content: string, sep: string, line: number): Document | undefined => {
    const prev = pending
    pending = { content, sep, line }
    return prev == null ? undefined : doc(prev.content + prev.sep, false, prev.content, prev.line)
  }
  const doc = (text: string, eot: boolean, content: string, line: number): Document =>
    ({ text, eot, heldOut: isHeldOut(content), source: file.path, line })
  // Close the paragraph being built. `sep` follows it when another document comes after.
  const close = (sep: string): Document | undefined => {
    if (lines.length === 0) return undefined
    const content = lines.join('\n')
    const closed = emit(content, sep, firstLine)
    lines = []
    size = 0
    return closed
  }

  for await (const line of readLines(file, o, o.maxDocumentChars, stats)) {
    if (!line.cont && !line.partial && line.text.trim() === '') {
      const d = close('\n\n')
      if (d != null) yield d
      continue
    }
    if (lines.length === 0) firstLine = line.number
    if (lineOpen) lines[lines.length - 1] += line.text
    else lines.push(line.text)
    lineOpen = line.partial
    size += line.text.length + 1
    if (size > o.maxDocumentChars) {
      // An over-long paragraph (or line) is cut here: no separator, the next piece continues it.
      const d = lineOpen ? close('') : close('\n')
      if (d != null) yield d
      lineOpen = false
    }
  }
  const d = close('\n\n')
  if (d != null) yield d
  if (pending != null) yield doc(pending.content + (pending.sep === '' ? '' : '\n'), true, pending.content, pending.line)
}

/** Records of a JSONL file. */
async function * jsonlDocuments (file: DataFile, o: Resolved, stats: ReadStats, isHeldOut: (s: string) => boolean): AsyncGenerator<Document> {
  let skipping = false // inside an over-long line
  const malformed = (line: number): void => {
    stats.malformedLines++
    stats.firstMalformed ??= `${file.path}:${line}`
  }
  for await (const line of readLines(file, o, o.maxLineChars, stats)) {
    if (line.partial || skipping) {
      if (!skipping) malformed(line.number)
      skipping = line.partial
      continue
    }
    if (line.text.trim() === '') continue
    let record: unknown
    try {
      record = JSON.parse(line.text)
    } catch {
      malformed(line.number)
      continue
    }
    const field = record != null && typeof record === 'object' && !Array.isArray(record) ? (record as Record<string, unknown>)[o.textField] : undefined
    if (typeof field !== 'string') {
      malformed(line.number)
      continue
    }
    const text = field.replaceAll('\0', '')
    if (text.trim() === '') continue
    // Pieces of an over-long record share the record's split.
    const heldOut = isHeldOut(text)
    for (let at = 0; at < text.length; at += o.maxDocumentChars) {
      const piece = text.slice(at, at + o.maxDocumentChars)
      yield { text: piece, eot: at + o.maxDocumentChars >= text.length, heldOut, source: file.path, line: line.number }
    }
  }
}

function definedOnly<T extends object> (o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}
