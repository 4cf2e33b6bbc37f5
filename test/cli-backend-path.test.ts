// A backend plugin written outside the repository's plugins/ (plain JS, loaded by file path) works
// with every command that takes --backend, as docs/plugins.md says: chosen by the name it declares,
// with its options, and refused before anything starts when the path is wrong, the file is not a
// backend plugin, or a .js ES module sits outside a "type": "module" package. (A plugin outside the
// repository, against the packed package: test/package-tarball.test.ts.)
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { ROOT, runCli, startCli, terminate } from './cli-helpers.ts'
import { removeDirs, tempDir } from './node-helpers.ts'
import { waitFor } from './wait-helpers.ts'

// as a user types it, relative to the working directory (the CLI runs in the repository root)
const FIXTURE = './test/fixtures/plugins/wrapped-cpu-backend.js'

describe('cli: --backend ./path of a backend plugin', function () {
  this.timeout(120_000)
  const dirs: string[] = []
  let dir: string
  before(async () => {
    dir = await tempDir('lsw-backend-path-')
    dirs.push(dir)
  })
  after(async () => { await removeDirs(dirs) })

  it('train --local trains on it, chosen by its declared name, with --threads reaching it', async () => {
    const model = join(dir, 'model.json')
    await writeFile(model, JSON.stringify({ vocabSize: 256, blockSize: 16, nLayer: 2, nHead: 2, dModel: 32 }))
    const corpus = join(dir, 'corpus.txt')
    await writeFile(corpus, Array.from({ length: 400 }, (_, i) => `${i}: alpha beta gamma delta. omega ${i % 7}.`).join('\n\n') + '\n')
    const r = await runCli(['train', '--local', '--backend', FIXTURE, '--steps', '2', '--model', model, '--data', corpus,
      '--batch', '2', '--eval-batches', '1', '--threads', '2'], { timeoutMs: 60_000 })
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stderr, /wrapped cpu backend ready name=wrapped-cpu threads=2/)
    assert.match(r.stderr, /\[layerswarm:train\] backend name=wrapped-cpu /)
    assert.match(r.stderr, /step 2\/2 \| loss/)
  })

  it('bench kernels measures it', async () => {
    const r = await runCli(['bench', 'kernels', '--backend', FIXTURE, '--no-baseline', '--reps', '1', '--warmup', '0', '--rounds', '1',
      '--threads', '1', '--json'], { timeoutMs: 90_000 })
    assert.equal(r.code, 0, r.stderr)
    const report = JSON.parse(r.stdout)
    assert.equal(report.backend, 'wrapped-cpu')
    assert.ok(report.results.length > 0)
  })

  it('train --local, bench kernels and start refuse a missing file or a non-backend plugin with exit 2, naming it', async () => {
    const data = await tempDir('lsw-backend-refuse-')
    dirs.push(data)
    const service = './test/fixtures/plugins/echo-service.js'
    const cases: Array<[string[], RegExp]> = [
      [['train', '--local', '--backend', './missing.js', '--steps', '2'], /^layerswarm: --backend \.\/missing\.js is not a known backend: plugin "\.\/missing\.js" not found: no file at .*missing\.js\n$/],
      [['train', '--local', '--backend', service, '--steps', '2'], /^layerswarm: --backend \.\/test\/fixtures\/plugins\/echo-service\.js: plugin "echo-service" \(.*echo-service\.js\) is a service plugin that provides "fixture:Echo", not "layerswarm:ComputeBackend"/],
      [['bench', 'kernels', '--backend', './missing.js'], /^layerswarm: --backend \.\/missing\.js is not a known backend: .*no file at .*missing\.js\n$/],
      [['bench', 'kernels', '--backend', service], /^layerswarm: --backend .*echo-service\.js: plugin "echo-service" .* is a service plugin .* not "layerswarm:ComputeBackend"/],
      // start resolves paths first (as a config file's, against the file): the message names the absolute file
      [['start', '--data-dir', data, '--listen', '/ip4/127.0.0.1/tcp/0', '--backend', './missing.js'], /^layerswarm: --backend \/.*\/missing\.js is not a known backend: .*no file at .*missing\.js\n$/],
      [['start', '--data-dir', data, '--listen', '/ip4/127.0.0.1/tcp/0', '--plugins', `backend-cpu,${service}`, '--backend', service], /^layerswarm: --backend \/.*echo-service\.js: plugin "echo-service" .* is a service plugin/]
    ]
    for (const [args, message] of cases) {
      const r = await runCli(args, { timeoutMs: 60_000 })
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
      assert.match(r.stderr, message, args.join(' '))
      assert.equal(r.stdout, '', `${args.join(' ')} printed nothing on stdout (no listening line, no report)`)
    }
  })

  it('a .js ES module plugin outside a "type": "module" package exits 2 saying how to make it one', async () => {
    const loose = await tempDir('lsw-backend-loose-')
    dirs.push(loose)
    const plugin = "export default { name: 'loose-backend', kind: 'backend', provides: ['layerswarm:ComputeBackend'], register () {} }\n"
    await writeFile(join(loose, 'my-backend.js'), plugin)
    const hint = /my-backend\.js is read as CommonJS: no package\.json above it says "type": "module"\. An ES module plugin \(import\/export\) is a \.mjs file, or a \.js file in a folder whose package\.json has \{"type": "module"\}/
    for (const args of [['train', '--local', '--backend', './my-backend.js', '--steps', '2'], ['bench', 'kernels', '--backend', './my-backend.js']]) {
      const r = await runCli(args, { cwd: loose })
      assert.equal(r.code, 2, r.stderr)
      assert.match(r.stderr, /^layerswarm: --backend \.\/my-backend\.js: plugin module "\.\/my-backend\.js" /)
      assert.match(r.stderr, hint)
    }
    // the same file in a "type": "module" folder loads (and is then refused for binding nothing: it is not started here)
    const typed = join(loose, 'typed')
    await mkdir(typed)
    await writeFile(join(typed, 'package.json'), '{ "type": "module" }\n')
    await writeFile(join(typed, 'my-backend.js'), plugin)
    const r = await runCli(['demo', '--backend', './my-backend.js', '--out', join(typed, 'out')], { cwd: typed })
    assert.equal(r.code, 2, r.stderr)
    assert.match(r.stderr, /plugin "loose-backend" \(.*my-backend\.js\) cannot run: plugin "loose-backend" failed in register\(\): it declares it provides "layerswarm:ComputeBackend" but did not register it/)
    assert.doesNotMatch(r.stderr, /read as CommonJS/)
  })

  it('demo refuses a missing backend file with exit 2 before it starts any node', async () => {
    const out = join(dir, 'demo-out')
    const t0 = Date.now()
    const r = await runCli(['demo', '--backend', './missing.js', '--out', out])
    assert.equal(r.code, 2, r.stderr)
    assert.match(r.stderr, /--backend \.\/missing\.js is not a known backend: plugin "\.\/missing\.js" not found: no file at .*missing\.js/)
    assert.equal(r.stdout, '')
    assert.equal(existsSync(out), false, 'the demo wrote nothing: it launched no node')
    assert.ok(Date.now() - t0 < 30_000)
  })

  it('demo refuses a plugin that is not a backend, naming it and its file', async () => {
    const r = await runCli(['demo', '--backend', './test/fixtures/plugins/echo-service.js', '--out', join(dir, 'demo-out-2')])
    assert.equal(r.code, 2, r.stderr)
    assert.match(r.stderr, /--backend \.\/test\/fixtures\/plugins\/echo-service\.js: plugin "echo-service" \(.*echo-service\.js\) is a service plugin .* not "layerswarm:ComputeBackend"/)
  })

  it('start with --plugins backend-cpu,./p.js --backend ./p.js runs ./p.js, with the options a config file keys by its path', async () => {
    const conf = await tempDir('lsw-backend-conf-')
    dirs.push(conf)
    const config = join(conf, 'node.json')
    // a config file's plugin paths are relative to the file
    const key = relative(conf, join(ROOT, FIXTURE))
    await writeFile(config, JSON.stringify({ pluginOptions: { [key.startsWith('.') ? key : `./${key}`]: { label: 'from-config' } } }))
    const node = await startCli(['--data-dir', join(conf, 'data'), '--listen', '/ip4/127.0.0.1/tcp/0', '--config', config,
      '--plugins', `backend-cpu,${FIXTURE}`, '--backend', FIXTURE], { timeoutMs: 60_000 })
    try {
      // stderr and stdout are separate pipes: the log lines may arrive after the listening line
      await waitFor(() => /wrapped cpu backend ready name=from-config/.test(node.stderr()), { what: 'the fixture backend to start with its options', state: node.stderr })
      assert.match(node.stderr(), /plugin not chosen; leaving it out plugin=backend-cpu/)
    } finally {
      const exit = await terminate(node)
      assert.equal(exit.code, 0, node.stderr())
    }
  })

  it('start with two backends and no --backend exits 2 saying to choose with --backend', async () => {
    const data = await tempDir('lsw-backend-conflict-')
    dirs.push(data)
    const r = await runCli(['start', '--data-dir', data, '--listen', '/ip4/127.0.0.1/tcp/0', '--plugins', `backend-cpu,${FIXTURE}`], { timeoutMs: 60_000 })
    assert.equal(r.code, 2, r.stderr)
    assert.match(r.stderr, /layerswarm: plugins "backend-cpu", "wrapped-cpu-backend" all provide "layerswarm:ComputeBackend", which takes exactly one provider; choose one with --backend .*: --backend backend-cpu or --backend .*wrapped-cpu-backend\.js/)
  })
})
