#!/usr/bin/env node
// `npm run build` (also run by `prepare`, so `npm install`/`npm ci` in the repository and `npm pack`
// build it): compiles the library (core/ and the built-in plugins/) to dist/ as JavaScript with type
// declarations, which the package's `exports` point at, so a plugin author's package imports
// `layerswarm/contracts` and `layerswarm/testing` under plain Node. The CLI (bin/layerswarm.js) and the
// repository's own code and tests keep running from the TypeScript sources through tsx.
//
// tsc rewrites `.ts` import specifiers to `.js`; what it cannot see is done here: files found at run
// time through `new URL('<relative>', import.meta.url)` (built-in plugin modules, the CPU backend's
// worker entry) and the files next to the sources that are not TypeScript (the worker entry itself,
// WASM text, network profiles). A reference that resolves to nothing fails the build.
import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const DIST = path.join(ROOT, 'dist')
const SOURCES = ['core', 'plugins'] // keep in step with tsconfig.build.json's "include"

function * walk (dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name)
    if (entry.isDirectory()) yield * walk(p)
    else if (entry.isFile()) yield p
  }
}

// a stale file of a deleted source must not ship
rmSync(DIST, { recursive: true, force: true })
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
const compiled = spawnSync(process.execPath, [tsc, '-p', path.join(ROOT, 'tsconfig.build.json')], { cwd: ROOT, stdio: 'inherit' })
if (compiled.status !== 0) {
  console.error(`build: tsc failed (exit ${compiled.status ?? compiled.signal}); dist/ is incomplete`)
  process.exit(1)
}

for (const dir of SOURCES) {
  for (const file of walk(path.join(ROOT, dir))) {
    if (file.endsWith('.ts')) continue
    const to = path.join(DIST, path.relative(ROOT, file))
    mkdirSync(path.dirname(to), { recursive: true })
    copyFileSync(file, to)
  }
}

// `new URL('./x.ts', import.meta.url)` -> './x.js'; a '.mjs' file's relative `import('./x.ts')` too.
// A non-TypeScript target that dist lacks (the corpus) is read from the package's own copy.
const URL_REF = /new URL\((['"])(\.{1,2}\/[^'"]+)\1, import\.meta\.url\)/g
const IMPORT_REF = /(import\s*\(?\s*)(['"])(\.{1,2}\/[^'"]+)\.ts\2/g
const problems = []
let rewritten = 0
for (const file of walk(DIST)) {
  if (!file.endsWith('.js') && !file.endsWith('.mjs')) continue
  const text = readFileSync(file, 'utf8')
  const check = (rel) => {
    if (!existsSync(path.resolve(path.dirname(file), rel))) problems.push(`${path.relative(ROOT, file)}: '${rel}' resolves to no file`)
    rewritten++
    return rel
  }
  let out = text.replace(URL_REF, (_, q, rel) => {
    if (rel.endsWith('.ts')) return `new URL(${q}${check(rel.slice(0, -3) + '.js')}${q}, import.meta.url)`
    if (existsSync(path.resolve(path.dirname(file), rel))) return `new URL(${q}${rel}${q}, import.meta.url)`
    const source = path.resolve(ROOT, path.relative(DIST, path.dirname(file)), rel)
    const back = path.relative(path.dirname(file), source).split(path.sep).join('/')
    return `new URL(${q}${check(back.startsWith('.') ? back : './' + back)}${q}, import.meta.url)`
  })
  if (file.endsWith('.mjs')) out = out.replace(IMPORT_REF, (_, head, q, rel) => `${head}${q}${check(rel + '.js')}${q}`)
  if (out !== text) writeFileSync(file, out)
}
if (problems.length > 0) {
  console.error(`build: run-time file references in dist/ that resolve to nothing:\n  ${problems.join('\n  ')}`)
  process.exit(1)
}
console.log(`build: dist/ written (${rewritten} run-time file references rewritten)`)
