// Soak: runs one test set N times in a row, each repetition a fresh mocha process with the json
// reporter, and prints how often each test failed. For finding flaky tests (docs/testing.md):
//
//   npm run test:soak -- --repeat 10 [--grep PATTERN] [--unit] [--rep-timeout SECONDS] [--exit-grace SECONDS]
//
// A repetition also fails as a whole when it gives no report, runs past --rep-timeout (default 1800 s),
// or does not exit within --exit-grace (default 30 s) after its last test: mocha runs with exit: false,
// so a test that leaves a node, socket or timer running hangs it. Exit code 0 when every repetition
// passed, 1 when anything failed, 2 on bad arguments. Reports and output stay in the printed directory.
import { spawn } from 'node:child_process'
import { mkdtemp, readFile } from 'node:fs/promises'
import { createWriteStream, existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const MOCHA = join(createRequire(import.meta.url).resolve('mocha/package.json'), '..', 'bin', 'mocha.js')

const USAGE = 'usage: npm run test:soak -- --repeat N [--grep PATTERN] [--unit] [--rep-timeout SECONDS] [--exit-grace SECONDS]'

interface SoakArgs {
  repeat: number
  grep?: string
  set: 'unit' | 'net'
  /** A repetition still running after this long is killed and counted as failed. */
  repTimeoutS: number
  /** A repetition whose tests ended but whose process is still alive this much later is killed and counted as failed. */
  exitGraceS: number
}

function parseArgs (argv: string[]): SoakArgs {
  const args: SoakArgs = { repeat: 0, set: 'net', repTimeoutS: 1800, exitGraceS: 30 }
  const value = (i: number, flag: string): string => {
    const v = argv[i + 1]
    if (v === undefined) throw new Error(`${flag} needs a value`)
    return v
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined]
    const take = (): string => { if (inline !== undefined) return inline; const v = value(i, flag); i++; return v }
    if (flag === '--repeat') args.repeat = Number(take())
    else if (flag === '--grep' || flag === '-g') args.grep = take()
    else if (flag === '--unit') args.set = 'unit'
    else if (flag === '--net') args.set = 'net'
    else if (flag === '--rep-timeout') args.repTimeoutS = Number(take())
    else if (flag === '--exit-grace') args.exitGraceS = Number(take())
    else throw new Error(`unknown argument "${a}"`)
  }
  if (!Number.isInteger(args.repeat) || args.repeat < 1) throw new Error('--repeat must be a whole number >= 1')
  if (!Number.isFinite(args.repTimeoutS) || args.repTimeoutS <= 0) throw new Error('--rep-timeout must be a positive number of seconds')
  if (!Number.isFinite(args.exitGraceS) || args.exitGraceS <= 0) throw new Error('--exit-grace must be a positive number of seconds')
  return args
}

/** The parts of mocha's json reporter output used here. */
interface MochaJson {
  stats: { tests: number, passes: number, pending: number, failures: number, duration: number }
  failures: Array<{ fullTitle: string, file?: string, err?: { message?: string } }>
}

interface RepResult {
  index: number
  wallS: number
  exitCode: number | null
  signal: string | null
  /** Why the repetition was killed, when it was. */
  killed?: string
  report?: MochaJson
  /** Why there is no report, when there is none. */
  noReport?: string
  log: string
}

interface FailureRow { title: string, file: string, count: number, firstError: string }

const load = (): string => loadavg().map(x => x.toFixed(2)).join(' ')

async function runOnce (args: SoakArgs, index: number, dir: string): Promise<RepResult> {
  const out = join(dir, `rep-${index}.json`)
  const log = join(dir, `rep-${index}.log`)
  const mochaArgs = [MOCHA, '--config', `.mocharc.${args.set}.json`, '--reporter', 'json', '--reporter-option', `output=${out}`]
  if (args.grep !== undefined) mochaArgs.push('--grep', args.grep)
  const logStream = createWriteStream(log)
  const t0 = performance.now()
  // its own process group, so a timed-out repetition can be stopped with everything it started
  const child = spawn(process.execPath, mochaArgs, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  child.stdout.pipe(logStream, { end: false })
  child.stderr.pipe(logStream, { end: false })
  let killed: string | undefined
  const kill = (why: string): void => {
    killed ??= why
    try { process.kill(-(child.pid as number), 'SIGKILL') } catch { child.kill('SIGKILL') }
  }
  const timer = setTimeout(() => { kill(`killed after --rep-timeout ${args.repTimeoutS} s`) }, args.repTimeoutS * 1000)
  // the json reporter writes its file when the run ends; from then on mocha should exit promptly
  let graceTimer: NodeJS.Timeout | undefined
  const watch = setInterval(() => {
    if (graceTimer !== undefined || !existsSync(out)) return
    graceTimer = setTimeout(() => { kill(`still running ${args.exitGraceS} s after its last test (something was left running); killed`) }, args.exitGraceS * 1000)
  }, 500)
  const [exitCode, signal] = await new Promise<[number | null, string | null]>(resolve => child.on('close', (c, s) => { resolve([c, s]) }))
  clearTimeout(timer)
  clearTimeout(graceTimer)
  clearInterval(watch)
  await new Promise<void>(resolve => logStream.end(resolve))
  const wallS = (performance.now() - t0) / 1000
  const result: RepResult = { index, wallS, exitCode, signal, killed, log }
  try {
    result.report = JSON.parse(await readFile(out, 'utf8')) as MochaJson
  } catch (err) {
    result.noReport = killed ?? `mocha exited with ${exitCode ?? signal} and wrote no report (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`
  }
  return result
}

/** Failures per test over all repetitions, most frequent first; a repetition that failed as a whole is one row of its own. */
function failureTable (reps: RepResult[]): FailureRow[] {
  const rows = new Map<string, FailureRow>()
  const add = (title: string, file: string, error: string): void => {
    const key = `${file}\u0000${title}`
    const row = rows.get(key) ?? { title, file, count: 0, firstError: error }
    row.count++
    rows.set(key, row)
  }
  for (const r of reps) {
    if (r.report === undefined) {
      add(`(whole repetition: ${r.noReport ?? 'no report'})`, '', `see ${r.log}`)
      continue
    }
    if (r.killed !== undefined) add(`(whole repetition: ${r.killed})`, '', `see ${r.log}`)
    for (const f of r.report.failures) add(f.fullTitle, f.file !== undefined ? f.file.replace(ROOT, '') : '', (f.err?.message ?? '').split('\n')[0])
  }
  return [...rows.values()].sort((a, b) => b.count - a.count || a.title.localeCompare(b.title))
}

function clip (s: string, n: number): string {
  return s.length <= n ? s : s.slice(0, n - 3) + '...'
}

function formatTable (rows: FailureRow[], repeat: number): string {
  const head = ['failures', 'test', 'file', 'first error']
  const body = rows.map(r => [`${r.count}/${repeat}`, clip(r.title, 110), r.file, clip(r.firstError, 100)])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map(b => b[i].length)))
  const line = (cells: string[]): string => cells.map((c, i) => i === 0 ? c.padStart(widths[i]) : c.padEnd(widths[i])).join('  ').trimEnd()
  return [line(head), line(widths.map(w => '-'.repeat(w))), ...body.map(line)].join('\n')
}

async function main (): Promise<number> {
  let args: SoakArgs
  try {
    args = parseArgs(process.argv.slice(2))
  } catch (err) {
    console.error(`soak: ${(err as Error).message}\n${USAGE}`)
    return 2
  }
  const dir = await mkdtemp(join(tmpdir(), 'lsw-soak-'))
  const what = `${args.set} set (.mocharc.${args.set}.json)${args.grep !== undefined ? `, --grep ${JSON.stringify(args.grep)}` : ''}`
  console.log(`soak: ${args.repeat} repetitions of the ${what}; reports and output in ${dir}`)
  console.log(`soak: load average at start ${load()} (1, 5, 15 min; ${availableParallelism()} cores)`)
  const t0 = performance.now()
  const reps: RepResult[] = []
  for (let i = 1; i <= args.repeat; i++) {
    const r = await runOnce(args, i, dir)
    reps.push(r)
    const s = r.report?.stats
    const summary = s !== undefined
      ? `${s.passes} passed, ${s.failures} failed, ${s.pending} pending`
      : `NO REPORT: ${r.noReport ?? ''}`
    const bad = s === undefined || s.failures > 0 || r.killed !== undefined
    console.log(`rep ${String(i).padStart(String(args.repeat).length)}/${args.repeat}: ${summary}${r.killed !== undefined && s !== undefined ? `; ${r.killed}` : ''}; ` +
      `${r.wallS.toFixed(1)} s wall; load ${load()}${bad ? `; output: ${r.log}` : ''}`)
  }
  const totalS = (performance.now() - t0) / 1000
  const rows = failureTable(reps)
  const failedReps = reps.filter(r => r.report === undefined || r.report.failures.length > 0 || r.killed !== undefined).length
  const failures = rows.reduce((a, r) => a + r.count, 0)
  const testRuns = reps.reduce((a, r) => a + (r.report?.stats.tests ?? 0), 0)
  console.log('')
  console.log(rows.length > 0 ? formatTable(rows, args.repeat) + '\n' : `no test failed in ${args.repeat} repetition(s)\n`)
  const walls = reps.map(r => r.wallS)
  const testRows = rows.filter(r => r.file !== '')
  console.log(`total: ${failures} failure(s) in ${failedReps} of ${args.repeat} repetition(s): ${testRows.length} distinct test(s) failed at least once, ` +
    `${rows.length - testRows.length === 0 ? 'no' : failures - testRows.reduce((a, r) => a + r.count, 0)} whole-repetition failure(s); ${testRuns} test runs; ` +
    `wall ${totalS.toFixed(1)} s (per repetition min ${Math.min(...walls).toFixed(1)}, max ${Math.max(...walls).toFixed(1)} s)`)
  console.log(`soak: load average at end ${load()}`)
  return failures > 0 ? 1 : 0
}

process.exitCode = await main()
