// The suite split (docs/testing.md): every test file is in exactly one of the two mocha configs,
// .mocharc.unit.json (no sockets, no child processes, no libp2p nodes; the whole set under 2 minutes)
// or .mocharc.net.json (real nodes, sockets, processes). A new test file in neither list fails here,
// so it cannot silently drop out of `npm test`.
import assert from 'node:assert/strict'
import { readFileSync, readdirSync, existsSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const SETS = ['unit', 'net'] as const

interface MochaConfig { spec?: string[], [option: string]: unknown }

function readConfig (name: string): MochaConfig {
  return JSON.parse(readFileSync(join(ROOT, name), 'utf8')) as MochaConfig
}

/** Every *.test.ts under test/, as a path relative to the repository root with forward slashes. */
function testFiles (dir = join(ROOT, 'test')): string[] {
  const out: string[] = []
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...testFiles(path))
    else if (entry.name.endsWith('.test.ts')) out.push(relative(ROOT, path).split('\\').join('/'))
  }
  return out.sort()
}

describe('test suites: the unit / net split', () => {
  const configs = Object.fromEntries(SETS.map(s => [s, readConfig(`.mocharc.${s}.json`)])) as Record<typeof SETS[number], MochaConfig>

  it('lists spec files explicitly (no globs), each of which exists', () => {
    for (const set of SETS) {
      const spec = configs[set].spec
      assert.ok(Array.isArray(spec) && spec.length > 0, `.mocharc.${set}.json needs a "spec" list`)
      for (const f of spec) {
        assert.doesNotMatch(f, /[*?{}[\]]/, `.mocharc.${set}.json: "${f}" is a glob; list files one by one`)
        assert.ok(existsSync(join(ROOT, f)), `.mocharc.${set}.json lists "${f}", which does not exist`)
      }
      assert.equal(new Set(spec).size, spec.length, `.mocharc.${set}.json lists a file twice`)
    }
  })

  it('puts every test file in exactly one set', () => {
    const problems: string[] = []
    for (const f of testFiles()) {
      const sets = SETS.filter(s => configs[s].spec?.includes(f) === true)
      if (sets.length === 0) problems.push(`${f} is in no set: add it to .mocharc.unit.json or .mocharc.net.json (see docs/testing.md)`)
      if (sets.length > 1) problems.push(`${f} is in both sets`)
    }
    assert.deepEqual(problems, [])
  })

  it('runs both sets with the same mocha options, and the default config names no files', () => {
    const options = (c: MochaConfig): MochaConfig => { const { spec: _spec, ...rest } = c; return rest }
    assert.deepEqual(options(configs.unit), options(configs.net))
    // so that `npx mocha test/one.test.ts` runs that file only (mocha adds a config's spec to the command line's)
    assert.equal(readConfig('.mocharc.json').spec, undefined)
  })
})
