// What `npm pack` ships works for a plugin author outside the repository, under plain Node (no tsx,
// no TypeScript sources): the packed package is installed into a copy of the author's package of
// test/fixtures/author-package (plain JS, ESM; docs/plugins.md "Testing your plugin"), whose mocha
// tests import layerswarm/testing and pass backendCompliance and trainingParity in a child `node`
// process; a TypeScript consumer typechecks against the shipped .d.ts (tsc --noEmit); and the packed
// CLI runs the author's backend by path in train --local, bench kernels, demo, sample and start. No network:
// the tarball's dependencies are the repository's node_modules, linked. Everything made is removed.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { cp, mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ROOT, runCli, startCli, terminate, type RunResult } from './cli-helpers.ts'
import { removeDirs, tempDir } from './node-helpers.ts'
import { waitFor } from './wait-helpers.ts'

/** Runs a command to its end; killed after timeoutMs. */
async function run (cmd: string, args: string[], cwd: string, timeoutMs: number): Promise<RunResult> {
  // NODE_OPTIONS cleared: mocha's --import=tsx must not reach the author's process
  const child = spawn(cmd, args, { cwd, env: { ...process.env, NODE_OPTIONS: '' }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const timer = setTimeout(() => { child.kill('SIGKILL') }, timeoutMs)
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>(resolve => child.on('close', (c, s) => { resolve([c, s]) }))
  clearTimeout(timer)
  return { code, signal, stdout, stderr }
}

const TS_CONSUMER = `import { definePlugin, ShapeError, Tokens, type ComputeBackend } from 'layerswarm/contracts'
import { backendCompliance, trainingParity, type ComplianceOptions } from 'layerswarm/testing'

declare const createMyBackend: () => Promise<ComputeBackend>
const opts: ComplianceOptions = { skipLarge: true, eventLoop: true }
backendCompliance('my-backend', createMyBackend, opts)
trainingParity('my-backend', createMyBackend, { steps: 4 })
export const err: ShapeError = new ShapeError('bad shape')
export default definePlugin({
  name: 'typed-backend',
  kind: 'backend',
  provides: [Tokens.ComputeBackend],
  async register (ctx) { ctx.container.registerInstance(Tokens.ComputeBackend, await createMyBackend()) }
})
// @ts-expect-error a plugin's kind is one of backend, codec, scheduler, service
definePlugin({ name: 'wrong', kind: 'gadget', provides: [], register () {} })
`

describe('package: what npm pack ships, used from a plugin author\'s package', function () {
  this.timeout(300_000)
  const dirs: string[] = []
  let pkg: string // the unpacked tarball
  let author: string
  let bin: string

  before(async function () {
    const dir = await tempDir('lsw-pack-')
    dirs.push(dir)
    // prepare builds dist/ first
    const packed = await run('npm', ['pack', '--pack-destination', dir], ROOT, 240_000)
    assert.equal(packed.code, 0, packed.stderr)
    const tgz = (await readdir(dir)).find(f => f.endsWith('.tgz'))
    assert.ok(tgz != null, `npm pack wrote no tarball: ${packed.stdout}`)
    const untar = await run('tar', ['-xzf', join(dir, tgz), '-C', dir], dir, 60_000)
    assert.equal(untar.code, 0, untar.stderr)
    pkg = join(dir, 'package')
    bin = join(pkg, 'bin', 'layerswarm.js')
    await symlink(join(ROOT, 'node_modules'), join(pkg, 'node_modules'))
    // the author's package, with layerswarm installed (linked) and mocha and the types tsc needs
    author = join(dir, 'author')
    await cp(join(ROOT, 'test', 'fixtures', 'author-package'), author, { recursive: true })
    await mkdir(join(author, 'node_modules', '@types'), { recursive: true })
    await symlink(pkg, join(author, 'node_modules', 'layerswarm'))
    await symlink(join(ROOT, 'node_modules', 'mocha'), join(author, 'node_modules', 'mocha'))
    for (const t of ['node', 'mocha']) await symlink(join(ROOT, 'node_modules', '@types', t), join(author, 'node_modules', '@types', t))
  })
  after(async () => { await removeDirs(dirs) })

  it('ships dist/ (JavaScript and type declarations for every export) and what the CLI runs, and no tests', async () => {
    const files = new Set<string>()
    const walk = async (d: string, rel: string): Promise<void> => {
      for (const e of await readdir(d, { withFileTypes: true })) {
        if (rel === '' && e.name === 'node_modules') continue
        if (e.isDirectory()) await walk(join(d, e.name), `${rel}${e.name}/`)
        else files.add(`${rel}${e.name}`)
      }
    }
    await walk(pkg, '')
    for (const entry of ['core/index', 'core/contracts/index', 'core/testing/index']) {
      assert.ok(files.has(`dist/${entry}.js`) && files.has(`dist/${entry}.d.ts`), `dist/${entry}.js and .d.ts`)
    }
    for (const f of ['dist/plugins/backend-cpu/index.js', 'dist/plugins/backend-cpu/worker-entry.mjs', 'dist/plugins/backend-cpu/wasm/kernels.wat',
      'bin/layerswarm.js', 'cli/main.ts', 'core/index.ts', 'plugins/backend-cpu/index.ts', 'corpus/kjv.txt.gz', 'package.json']) {
      assert.ok(files.has(f), `the tarball has ${f}`)
    }
    assert.deepEqual([...files].filter(f => /\.test\.ts$|^test\/fixtures\//.test(f)), [], 'no test files')
  })

  it('an author\'s plain-JS mocha tests pass backendCompliance and trainingParity from layerswarm/testing under plain node', async () => {
    const r = await run(process.execPath, [join(author, 'node_modules', 'mocha', 'bin', 'mocha.js'), '--timeout', '60000', 'test/'], author, 240_000)
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`)
    assert.match(r.stdout, /my-backend backend compliance/)
    assert.match(r.stdout, /kernels leave it free/)
    assert.match(r.stdout, /my-backend training parity/)
    assert.match(r.stdout, /\d+ passing/)
    assert.doesNotMatch(r.stdout, /failing|pending/)
  })

  it('a TypeScript consumer typechecks against the shipped declarations (tsc --noEmit)', async () => {
    await writeFile(join(author, 'consumer.ts'), TS_CONSUMER)
    await writeFile(join(author, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, types: ['node', 'mocha'] },
      files: ['consumer.ts']
    }))
    const r = await run(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', author], author, 120_000)
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`)
  })

  describe('the packed CLI with --backend ./my-backend.js, in the author\'s folder', function () {
    before(async function () {
      await writeFile(join(author, 'model.json'), JSON.stringify({ vocabSize: 256, blockSize: 16, nLayer: 2, nHead: 2, dModel: 32 }))
      await writeFile(join(author, 'corpus.txt'), Array.from({ length: 400 }, (_, i) => `${i}: alpha beta gamma delta. omega ${i % 7}.`).join('\n\n') + '\n')
    })
    const where = (): { bin: string, cwd: string } => ({ bin, cwd: author })

    it('train --local trains on it, chosen by the name it declares, with --threads', async () => {
      const r = await runCli(['train', '--local', '--backend', './my-backend.js', '--steps', '2', '--model', 'model.json', '--data', 'corpus.txt',
        '--batch', '2', '--eval-batches', '1', '--threads', '2'], { ...where(), timeoutMs: 90_000 })
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stderr, /my backend ready threads=2/)
      assert.match(r.stderr, /\[layerswarm:train\] backend name=my-backend /)
      assert.match(r.stderr, /step 2\/2 \| loss/)
    })

    it('bench kernels measures it', async () => {
      const r = await runCli(['bench', 'kernels', '--backend', './my-backend.js', '--no-baseline', '--reps', '1', '--warmup', '0', '--rounds', '1', '--json'],
        { ...where(), timeoutMs: 120_000 })
      assert.equal(r.code, 0, r.stderr)
      assert.equal(JSON.parse(r.stdout).backend, 'my-backend')
    })

    it('demo runs every node on it, and sample generates from the demo\'s model on it', async () => {
      const out = join(author, 'demo-out')
      const r = await runCli(['demo', '--backend', './my-backend.js', '--steps', '2', '--model', 'model.json', '--nodes', '2', '--stages', '2',
        '--batch', '2', '--eval-batches', '1', '--out', out], { ...where(), timeoutMs: 180_000 })
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`)
      assert.match(r.stdout, /trained 2 steps on 2 nodes in 2 stages/)
      for (const log of ['s0.log', 's1.log']) {
        assert.match(await readFile(join(out, 'logs', log), 'utf8'), /plugins=\["my-backend"/, `${log} ran my-backend`)
      }
      const sample = await runCli(['sample', '--checkpoint', join(out, 'model.safetensors'), '--backend', './my-backend.js', '--tokens', '5',
        '--prompt', 'And', '--log-level', 'info'], { ...where(), timeoutMs: 90_000 })
      assert.equal(sample.code, 0, sample.stderr)
      assert.match(sample.stderr, /started plugin plugin=my-backend kind=backend/)
      assert.match(sample.stdout, /^And/)
    })

    it('start runs a node on it', async () => {
      const node = await startCli(['--data-dir', join(author, 'node-data'), '--listen', '/ip4/127.0.0.1/tcp/0', '--backend', './my-backend.js'],
        { ...where(), timeoutMs: 90_000 })
      try {
        await waitFor(() => /node started .*plugins=\["my-backend"\]/.test(node.stderr()), { what: 'the node to start on my-backend', state: node.stderr })
      } finally {
        const exit = await terminate(node)
        assert.equal(exit.code, 0, node.stderr())
      }
    })
  })
})
