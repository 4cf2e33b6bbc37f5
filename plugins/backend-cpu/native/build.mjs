// Builds the optional native kernels (gemm.c, attention.c, gelu.c, xent.c -> build/gemm.node) with the system
// C compiler, against the N-API headers that ship with Node. Run by `npm install`; it never fails the install: without a
// compiler, headers or a supported OS, it says so and the CPU backend keeps its WASM kernels.
// node-gyp is not used: it would download Node's headers, and this is four C files.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const out = join(here, 'build', 'gemm.node')
const include = join(dirname(process.execPath), '..', 'include', 'node')
const cc = process.env.CC ?? 'cc'

function skip (why) {
  console.log(`layerswarm: native kernels not built (${why}); the CPU backend uses its WASM kernels`)
  process.exit(0)
}

if (process.env.LAYERSWARM_NATIVE === '0') skip('LAYERSWARM_NATIVE=0')
if (process.arch !== 'x64') skip(`${process.arch}: the kernels are x86-64 (AVX2/AVX-512)`)
if (process.platform !== 'linux' && process.platform !== 'darwin') skip(`${process.platform} is not supported`)
if (!existsSync(join(include, 'node_api.h'))) skip(`no N-API headers at ${include}`)
mkdirSync(dirname(out), { recursive: true })
// built beside, then renamed: a process that has the old file loaded keeps its copy intact
const tmp = `${out}.${process.pid}.tmp`
const args = ['-O3', '-std=c11', '-fPIC', '-shared', '-fvisibility=hidden', '-I', include, join(here, 'gemm.c'), join(here, 'attention.c'), join(here, 'gelu.c'), join(here, 'xent.c'), '-lm', '-o', tmp]
if (process.platform === 'darwin') args.push('-undefined', 'dynamic_lookup')
const r = spawnSync(cc, args, { stdio: ['ignore', 'inherit', 'inherit'], timeout: 120_000 })
if (r.error !== undefined || r.status !== 0) {
  rmSync(tmp, { force: true })
  skip(r.error !== undefined ? `${cc}: ${r.error.message}` : `${cc} exited with ${String(r.status)}`)
}
renameSync(tmp, out)
console.log(`layerswarm: native kernels built (${out})`)
