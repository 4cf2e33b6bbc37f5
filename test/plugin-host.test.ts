// Plugin host: ordering, lifecycle, every start failure, loading by file path / package / object.
import '../core/polyfills.ts'
import assert from 'node:assert/strict'
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { container as rootContainer, type DependencyContainer } from 'tsyringe'
import { Tokens, type Codec, type Plugin, type PluginContext } from '../core/contracts/index.ts'
import { AbortError, ConfigError } from '../core/errors.ts'
import { createLogger } from '../core/logger.ts'
import { PluginHost } from '../core/node/plugin-host.ts'
import { resolveBackend, verifyBackend, withComputeBackend } from '../core/node/backend-choice.ts'
import {
  BackendChoiceError, CircularDependencyError, ConflictingProvidersError, DuplicatePluginError, InvalidChoiceError, InvalidPluginError,
  MissingDependencyError, PluginHostStateError, PluginLoadError, PluginNotFoundError, PluginStartError, PluginStopError
} from '../core/node/plugin-errors.ts'
import { builtinPluginNames, importPluginModule } from '../core/node/plugin-registry.ts'

const FIXTURES = fileURLToPath(new URL('./fixtures/plugins/', import.meta.url))

interface Hooks { register?: (ctx: PluginContext) => void, start?: (ctx: PluginContext) => void, stop?: () => void }

/** A service plugin that records its lifecycle into `events` and binds a value for each token it provides. */
function recorder (events: string[], name: string, provides: string[], requires: string[] = [], hooks: Hooks = {}): Plugin {
  return {
    name,
    kind: 'service',
    provides,
    requires,
    register (ctx) {
      events.push(`register:${name}`)
      hooks.register?.(ctx)
      for (const t of provides) ctx.container.registerInstance(t, { from: name })
    },
    start (ctx) {
      events.push(`start:${name}`)
      hooks.start?.(ctx)
    },
    stop () {
      events.push(`stop:${name}`)
      hooks.stop?.()
    }
  }
}

/** A container with the bindings core makes before plugins run. */
function coreContainer (): DependencyContainer {
  const c = rootContainer.createChildContainer()
  c.registerInstance(Tokens.Logger, createLogger({ level: 'silent' }))
  c.registerInstance(Tokens.NodeConfig, {})
  return c
}

describe('plugin host', () => {
  describe('ordering and lifecycle', () => {
    it('registers, then starts, a chain in dependency order whatever the load order, and stops in reverse', async () => {
      const events: string[] = []
      const host = new PluginHost({ container: coreContainer() })
      await host.load([
        recorder(events, 'c', ['t:c'], ['t:b']),
        recorder(events, 'b', ['t:b'], ['t:a']),
        recorder(events, 'a', ['t:a'], [Tokens.Logger])
      ])
      assert.deepEqual(host.plan(), ['a', 'b', 'c'])
      await host.start()
      assert.deepEqual(host.names(), ['a', 'b', 'c'])
      assert.deepEqual(events, ['register:a', 'register:b', 'register:c', 'start:a', 'start:b', 'start:c'])
      assert.deepEqual(host.container.resolve('t:c'), { from: 'c' })
      events.length = 0
      await host.stop()
      assert.deepEqual(events, ['stop:c', 'stop:b', 'stop:a'])
      await host.stop()
      assert.deepEqual(events, ['stop:c', 'stop:b', 'stop:a'], 'a second stop() does nothing')
    })

    it('orders a diamond so every plugin comes after all it requires', async () => {
      const events: string[] = []
      const host = new PluginHost({ container: coreContainer() })
      await host.load([
        recorder(events, 'top', ['t:top'], ['t:left', 't:right']),
        recorder(events, 'right', ['t:right'], ['t:base']),
        recorder(events, 'left', ['t:left'], ['t:base']),
        recorder(events, 'base', ['t:base'])
      ])
      await host.start()
      const order = host.names()
      const at = (n: string): number => order.indexOf(n)
      assert.ok(at('base') < at('left') && at('base') < at('right'))
      assert.ok(at('left') < at('top') && at('right') < at('top'))
      assert.deepEqual(order, ['base', 'left', 'right', 'top'])
      events.length = 0
      await host.stop()
      assert.deepEqual(events, order.map(n => `stop:${n}`).reverse())
    })

    it('gives each plugin its own options, a scoped logger and an abort signal that stop() fires', async () => {
      const lines: string[] = []
      const seen: PluginContext[] = []
      const host = new PluginHost({
        container: coreContainer(),
        logger: createLogger({ level: 'info', format: 'json', write: l => { lines.push(l) } }),
        pluginOptions: { p1: { depth: 3 } }
      })
      await host.load([
        recorder([], 'p1', [], [], { register: ctx => { seen.push(ctx) }, start: ctx => { ctx.logger.info('hello from p1') } }),
        recorder([], 'p2', [], [], { register: ctx => { seen.push(ctx) } })
      ])
      await host.start()
      assert.deepEqual(seen[0].options, { depth: 3 })
      assert.deepEqual(seen[1].options, {})
      const hello = lines.map(l => JSON.parse(l)).find(r => r.msg === 'hello from p1')
      assert.equal(hello?.component, 'layerswarm:plugin:p1')
      assert.equal(seen[0].signal.aborted, false)
      await host.stop()
      assert.equal(seen[0].signal.aborted, true)
    })

    it('counts tokens bound by core before start as satisfied, and uses a fresh child container by default', async () => {
      const host = new PluginHost()
      await host.load([recorder([], 'needs-config', ['t:x'], [Tokens.NodeConfig])])
      assert.throws(() => host.plan(), MissingDependencyError)
      host.container.registerInstance(Tokens.NodeConfig, { port: 0 })
      assert.deepEqual(host.plan(), ['needs-config'])
      assert.equal(rootContainer.isRegistered(Tokens.NodeConfig), false, 'the root container stays clean')
      await host.start()
      await host.stop()
    })

    it('collects every provider of a multi token (Codec) and resolves them all', async () => {
      const second: Codec = { id: 65002, name: 'second', errorBound: { relMaxAbs: 0 }, nominalRatio: 1, encode: () => new Uint8Array(0), decode: () => ({ data: new Float32Array(0), shape: [0] }) }
      const host = new PluginHost({ container: coreContainer(), cwd: FIXTURES })
      await host.load([
        './identity-codec.ts',
        { name: 'second-codec', kind: 'codec', provides: [Tokens.Codec], register: ctx => { ctx.container.registerInstance(Tokens.Codec, second) } },
        recorder([], 'codec-user', [], [Tokens.Codec])
      ])
      await host.start()
      assert.equal(host.names().at(-1), 'codec-user', 'a plugin requiring a multi token starts after every provider')
      const codecs = host.container.resolveAll<Codec>(Tokens.Codec)
      assert.deepEqual(codecs.map(c => c.name).sort(), ['identity-fixture', 'second'])
      const identity = codecs.find(c => c.name === 'identity-fixture') as Codec
      const x = new Float32Array([1.5, -2, 0])
      assert.deepEqual(identity.decode(identity.encode(x, [3], 'activation')).data, x)
      await host.stop()
    })

    it('with a choice, registers and starts only the chosen provider of a single token', async () => {
      const events: string[] = []
      const host = new PluginHost({ container: coreContainer(), choices: { [Tokens.ComputeBackend]: 'fast' } })
      await host.load([
        recorder(events, 'slow', [Tokens.ComputeBackend]),
        recorder(events, 'fast', [Tokens.ComputeBackend]),
        recorder(events, 'trainer', [], [Tokens.ComputeBackend])
      ])
      await host.start()
      assert.deepEqual(host.names(), ['fast', 'trainer'])
      assert.deepEqual(host.container.resolve(Tokens.ComputeBackend), { from: 'fast' })
      assert.ok(!events.some(e => e.endsWith(':slow')), 'the provider not chosen is never registered nor started')
      await host.stop()
    })
  })

  describe('start failures leave nothing running', () => {
    it('rejects a missing dependency, naming the plugin and the token, before registering anything', async () => {
      const events: string[] = []
      const host = new PluginHost({ container: coreContainer() })
      await host.load([recorder(events, 'ok', ['t:ok']), recorder(events, 'needy', [], ['t:ok', 't:absent'])])
      await assert.rejects(host.start(), (err: unknown) => {
        assert.ok(err instanceof MissingDependencyError)
        assert.ok(err instanceof ConfigError, 'a configuration problem (CLI exit 2)')
        assert.equal(err.code, 'ERR_PLUGIN_MISSING_DEPENDENCY')
        assert.match(err.message, /"needy" requires "t:absent"/)
        return true
      })
      assert.deepEqual(events, [])
      await host.stop()
    })

    it('names a dependency cycle', async () => {
      const host = new PluginHost({ container: coreContainer() })
      await host.load([
        recorder([], 'free', ['t:free']),
        recorder([], 'a', ['t:a'], ['t:c']),
        recorder([], 'b', ['t:b'], ['t:a']),
        recorder([], 'c', ['t:c'], ['t:b', 't:free'])
      ])
      await assert.rejects(host.start(), (err: unknown) => {
        assert.ok(err instanceof CircularDependencyError)
        assert.deepEqual(err.cycle, ['a', 'c', 'b', 'a'])
        assert.match(err.message, /a -> c -> b -> a/)
        return true
      })
    })

    it('rejects two providers of a single token without a choice', async () => {
      const host = new PluginHost({ container: coreContainer() })
      await host.load([recorder([], 'cpu', [Tokens.ComputeBackend]), recorder([], 'gpu', [Tokens.ComputeBackend])])
      await assert.rejects(host.start(), (err: unknown) => {
        assert.ok(err instanceof ConflictingProvidersError)
        assert.deepEqual(err.providers, ['cpu', 'gpu'])
        assert.match(err.message, /"cpu", "gpu" all provide "layerswarm:ComputeBackend"/)
        return true
      })
    })

    it('says in a conflict how its user chooses, when the host was given a hint for the token', async () => {
      const host = new PluginHost({
        container: coreContainer(),
        choiceHints: { [Tokens.ComputeBackend]: providers => `use --backend ${providers.map(p => p.spec ?? p.name).join(' or ')}` }
      })
      await host.load([recorder([], 'cpu', [Tokens.ComputeBackend]), recorder([], 'gpu', [Tokens.ComputeBackend])])
      await assert.rejects(host.start(), (err: unknown) =>
        err instanceof ConflictingProvidersError && /which takes exactly one provider; use --backend cpu or gpu$/.test(err.message))
    })

    it('rejects a choice naming an unloaded plugin, a non-provider, or a multi token', async () => {
      const plugins = (): Plugin[] => [recorder([], 'cpu', [Tokens.ComputeBackend]), recorder([], 'other', ['t:other'])]
      for (const [choices, pattern] of [
        [{ [Tokens.ComputeBackend]: 'webgpu' }, /no plugin of that name is loaded \(loaded providers: "cpu"\)/],
        [{ [Tokens.ComputeBackend]: 'other' }, /does not provide it/],
        [{ [Tokens.Codec]: 'cpu' }, /collects every provider/]
      ] as const) {
        const host = new PluginHost({ container: coreContainer(), choices })
        await host.load(plugins())
        await assert.rejects(host.start(), (err: unknown) => err instanceof InvalidChoiceError && pattern.test(err.message))
      }
    })

    it('says when a dependency went missing because its provider was not chosen', async () => {
      const host = new PluginHost({ container: coreContainer(), choices: { [Tokens.ComputeBackend]: 'cpu' } })
      await host.load([
        recorder([], 'cpu', [Tokens.ComputeBackend]),
        recorder([], 'gpu', [Tokens.ComputeBackend, 't:gpu-info']),
        recorder([], 'monitor', [], ['t:gpu-info'])
      ])
      await assert.rejects(host.start(), /"gpu" provides it but was left out by the choice for "layerswarm:ComputeBackend"/)
    })

    it('when register() throws, stops every plugin already registered (and the failing one) in reverse', async () => {
      const events: string[] = []
      const boom = new Error('no device')
      const host = new PluginHost({ container: coreContainer() })
      await host.load([
        recorder(events, 'a', ['t:a']),
        recorder(events, 'b', ['t:b'], ['t:a']),
        recorder(events, 'c', ['t:c'], ['t:b'], { register: () => { throw boom } }),
        recorder(events, 'd', [], ['t:c'])
      ])
      await assert.rejects(host.start(), (err: unknown) => {
        assert.ok(err instanceof PluginStartError)
        assert.equal(err.plugin, 'c')
        assert.equal(err.phase, 'register')
        assert.equal(err.cause, boom)
        assert.match(err.message, /plugin "c" failed in register\(\): no device/)
        return true
      })
      assert.deepEqual(events, ['register:a', 'register:b', 'register:c', 'stop:c', 'stop:b', 'stop:a'])
      await host.stop()
      assert.equal(events.length, 6, 'stop() after a failed start does nothing more')
    })

    it('when start() throws, stops every plugin in reverse, including ones registered but not started', async () => {
      const events: string[] = []
      const host = new PluginHost({ container: coreContainer() })
      await host.load([
        recorder(events, 'a', ['t:a']),
        recorder(events, 'b', ['t:b'], ['t:a'], { start: () => { throw new Error('port in use') } }),
        recorder(events, 'c', [], ['t:b'])
      ])
      await assert.rejects(host.start(), (err: unknown) => err instanceof PluginStartError && err.plugin === 'b' && err.phase === 'start')
      assert.deepEqual(events, ['register:a', 'register:b', 'register:c', 'start:a', 'start:b', 'stop:c', 'stop:b', 'stop:a'])
    })

    it('fails a plugin that declares a token but does not register it', async () => {
      const host = new PluginHost({ container: coreContainer() })
      await host.load([{ name: 'liar', kind: 'backend', provides: [Tokens.ComputeBackend], register () {} }])
      await assert.rejects(host.start(), /plugin "liar" failed in register\(\): it declares it provides "layerswarm:ComputeBackend" but did not register it/)
    })

    it('aborts start through the caller signal and unwinds what was started', async () => {
      const events: string[] = []
      const controller = new AbortController()
      const host = new PluginHost({ container: coreContainer(), signal: controller.signal })
      await host.load([
        recorder(events, 'a', ['t:a'], [], { start: () => { controller.abort() } }),
        recorder(events, 'b', [], ['t:a'])
      ])
      await assert.rejects(host.start(), AbortError)
      assert.deepEqual(events, ['register:a', 'register:b', 'start:a', 'stop:b', 'stop:a'])
    })

    it('keeps stopping the others when one stop() throws, then reports it', async () => {
      const events: string[] = []
      const host = new PluginHost({ container: coreContainer() })
      await host.load([
        recorder(events, 'a', ['t:a']),
        recorder(events, 'b', [], ['t:a'], { stop: () => { throw new Error('stuck socket') } })
      ])
      await host.start()
      events.length = 0
      await assert.rejects(host.stop(), (err: unknown) => err instanceof PluginStopError && /"b" \(stuck socket\)/.test(err.message))
      assert.deepEqual(events, ['stop:b', 'stop:a'])
    })

    it('refuses load() and a second start() once started', async () => {
      const host = new PluginHost({ container: coreContainer() })
      await host.load([recorder([], 'a', [])])
      await host.start()
      await assert.rejects(host.load([recorder([], 'b', [])]), PluginHostStateError)
      await assert.rejects(host.start(), PluginHostStateError)
      await host.stop()
    })
  })

  describe('loading modules', () => {
    it('loads a user plugin from a relative .js path and an absolute .ts path', async () => {
      const events: string[] = []
      const container = coreContainer()
      container.registerInstance('test:events', events)
      const host = new PluginHost({ container, cwd: FIXTURES, pluginOptions: { 'echo-service': { prefix: '> ' } } })
      await host.load(['./echo-service.js', path.join(FIXTURES, 'identity-codec.ts')])
      await host.start()
      assert.deepEqual(host.names(), ['echo-service', 'identity-codec'])
      assert.equal(host.container.resolve<{ echo: (s: string) => string }>('fixture:Echo').echo('hi'), '> hi')
      assert.equal(host.container.resolveAll<Codec>(Tokens.Codec).length, 1)
      await host.stop()
      assert.deepEqual(events, ['register:echo-service', 'start:echo-service', 'stop:echo-service'])
    })

    it('hands a plugin the options keyed by the path it was loaded from (any spelling of that file), under those keyed by its name', async () => {
      const echo = async (pluginOptions: Record<string, Record<string, unknown>>): Promise<string> => {
        const container = coreContainer()
        const host = new PluginHost({ container, cwd: FIXTURES, pluginOptions })
        await host.load([path.join(FIXTURES, 'echo-service.js')])
        await host.start()
        try {
          return host.container.resolve<{ echo: (s: string) => string }>('fixture:Echo').echo('hi')
        } finally {
          await host.stop()
        }
      }
      assert.equal(await echo({ './echo-service.js': { prefix: 'relative:' } }), 'relative:hi')
      assert.equal(await echo({ [path.join(FIXTURES, 'echo-service.js')]: { prefix: 'absolute:' } }), 'absolute:hi')
      assert.equal(await echo({ './echo-service.js': { prefix: 'path:' }, 'echo-service': { prefix: 'name:' } }), 'name:hi')
      assert.equal(await echo({ './other.js': { prefix: 'other:' } }), 'hi')
    })

    it('runs the docs example: a user plugin from a file path on top of the built-in backend-cpu', async () => {
      const lines: string[] = []
      const host = new PluginHost({
        container: coreContainer(),
        cwd: FIXTURES,
        logger: createLogger({ level: 'info', format: 'json', write: l => { lines.push(l) } }),
        pluginOptions: { 'backend-cpu': { threads: 1 } }
      })
      await host.load(['./heartbeat-log.js', 'backend-cpu'])
      try {
        await host.start()
        assert.deepEqual(host.names(), ['backend-cpu', 'heartbeat-log'])
        const beats = host.container.resolve<{ count: number, timer?: unknown }>('heartbeat-log:Beats')
        assert.equal(beats.count, 0)
        assert.ok(beats.timer != null, 'its timer is kept in the node\'s container, for stop(ctx)')
        const using = lines.map(l => JSON.parse(l)).find(r => r.msg === 'using backend')
        assert.equal(using?.component, 'layerswarm:plugin:heartbeat-log')
        assert.equal(using?.backend, 'cpu')
      } finally {
        await host.stop()
      }
    })

    it('rejects a module without a default export, and an invalid plugin shape, listing what is wrong', async () => {
      const host = new PluginHost({ cwd: FIXTURES })
      await assert.rejects(host.load(['./no-default-export.js']), (err: unknown) =>
        err instanceof InvalidPluginError && /"\.\/no-default-export\.js" has no valid plugin default export: there is no default export/.test(err.message))
      await assert.rejects(host.load(['./bad-shape.js']), (err: unknown) => {
        assert.ok(err instanceof InvalidPluginError)
        assert.match(err.message, /bad-shape\.js/)
        assert.deepEqual(err.problems, [
          '"kind" must be one of backend, codec, scheduler, service (got "gadget")',
          '"provides" must be an array of token strings',
          '"register" must be a function'
        ])
        return true
      })
      assert.deepEqual(host.names(), [], 'a failed load adds nothing')
    })

    it('reports a module that throws while importing, and a file that does not exist', async () => {
      const host = new PluginHost({ cwd: FIXTURES })
      await assert.rejects(host.load(['./throws-on-import.js']), (err: unknown) =>
        err instanceof PluginLoadError && /fixture exploded at import/.test(err.message))
      await assert.rejects(host.load(['./nowhere.js']), (err: unknown) =>
        err instanceof PluginNotFoundError && err.message.includes(path.join(FIXTURES, 'nowhere.js')))
    })

    it('rejects an unknown name, listing the built-ins and suggesting ./ for a local file', async () => {
      const host = new PluginHost({ cwd: FIXTURES })
      await assert.rejects(host.load(['backend-quantum']), (err: unknown) =>
        err instanceof PluginNotFoundError && /built-in plugins are: backend-cpu/.test(err.message))
      await assert.rejects(host.load(['echo-service.js']), /did you mean "\.\/echo-service\.js"\?/)
    })

    it('rejects two different plugins with the same name, and ignores the same plugin loaded twice', async () => {
      const host = new PluginHost({ cwd: FIXTURES })
      await host.load(['./echo-service.js', './echo-service.js'])
      assert.deepEqual(host.names(), ['echo-service'])
      await assert.rejects(host.load([recorder([], 'echo-service', [])]), (err: unknown) =>
        err instanceof DuplicatePluginError && /two plugins are named "echo-service" \(from "\.\/echo-service\.js \(.*echo-service\.js\)" and "<object>"\)/.test(err.message))
    })

    describe('npm packages resolved from cwd', () => {
      let dir: string
      before(async () => {
        dir = await mkdtemp(path.join(os.tmpdir(), 'layerswarm-plugins-'))
        // An ESM-only package (an "import" condition and a "require" target that does not exist),
        // and a scoped package with a subpath export, found from a nested working directory.
        const pkg = path.join(dir, 'node_modules', 'layerswarm-plugin-hello')
        await mkdir(pkg, { recursive: true })
        await writeFile(path.join(pkg, 'package.json'), JSON.stringify({ name: 'layerswarm-plugin-hello', type: 'module', exports: { '.': { require: './missing.cjs', import: './hello.js' } } }))
        await writeFile(path.join(pkg, 'hello.js'), "export default { name: 'hello', kind: 'service', provides: ['pkg:Hello'], register (ctx) { ctx.container.registerInstance('pkg:Hello', 'hello from a package') } }\n")
        const scoped = path.join(dir, 'node_modules', '@acme', 'swarm-tools')
        await mkdir(path.join(scoped, 'lib'), { recursive: true })
        await writeFile(path.join(scoped, 'package.json'), JSON.stringify({ name: '@acme/swarm-tools', type: 'module', exports: { './monitor': './lib/monitor.js' } }))
        await writeFile(path.join(scoped, 'lib', 'monitor.js'), "export default { name: 'acme-monitor', kind: 'service', provides: [], requires: ['pkg:Hello'], register () {} }\n")
        await mkdir(path.join(dir, 'project', 'sub'), { recursive: true })
      })
      after(async () => { await rm(dir, { recursive: true, force: true }) })

      it('loads a package and a scoped package subpath through their "exports"', async () => {
        const host = new PluginHost({ cwd: path.join(dir, 'project', 'sub') })
        await host.load(['@acme/swarm-tools/monitor', 'layerswarm-plugin-hello'])
        await host.start()
        assert.deepEqual(host.names(), ['hello', 'acme-monitor'])
        assert.equal(host.container.resolve('pkg:Hello'), 'hello from a package')
        await host.stop()
      })

      it('rejects a package whose "exports" has no entry for what was asked', async () => {
        await assert.rejects(new PluginHost({ cwd: dir }).load(['@acme/swarm-tools']), (err: unknown) =>
          err instanceof PluginNotFoundError && /exports no module for "\."/.test(err.message))
      })
    })
  })

  describe('backend choice (--backend)', () => {
    const wrapped = path.join(FIXTURES, 'wrapped-cpu-backend.js')

    it('maps short and built-in names to the built-in plugin, and a path to its file and declared name', async () => {
      assert.deepEqual(await resolveBackend('cpu'), { value: 'cpu', spec: 'backend-cpu', name: 'backend-cpu' })
      assert.deepEqual(await resolveBackend('backend-webgpu'), { value: 'backend-webgpu', spec: 'backend-webgpu', name: 'backend-webgpu' })
      assert.deepEqual(await resolveBackend('./wrapped-cpu-backend.js', FIXTURES),
        { value: './wrapped-cpu-backend.js', spec: wrapped, name: 'wrapped-cpu-backend', file: wrapped })
    })

    it('finds a bare name among the other plugin specs by the name their plugin declares', async () => {
      const choice = await resolveBackend('wrapped-cpu-backend', FIXTURES, ['backend-cpu', './echo-service.js', './wrapped-cpu-backend.js'])
      assert.equal(choice.spec, wrapped)
      assert.equal(choice.name, 'wrapped-cpu-backend')
    })

    it('refuses a value that names nothing, a broken module, or a plugin that is not a backend, naming the value', async () => {
      for (const [value, pattern] of [
        ['./missing.js', /^--backend \.\/missing\.js is not a known backend: plugin "\.\/missing\.js" not found: no file at /],
        ['nosuch', /^--backend nosuch is not a known backend: .*; short names: cpu, webgpu$/],
        ['./throws-on-import.js', /^--backend \.\/throws-on-import\.js: plugin module .* failed to load: fixture exploded at import/],
        ['./echo-service.js', /^--backend \.\/echo-service\.js: plugin "echo-service" \(.*echo-service\.js\) is a service plugin that provides "fixture:Echo", not "layerswarm:ComputeBackend"/],
        ['compression', /^--backend compression: plugin "compression" \(built in\) is a codec plugin/]
      ] as const) {
        await assert.rejects(resolveBackend(value, FIXTURES), (err: unknown) =>
          err instanceof BackendChoiceError && err instanceof ConfigError && err.value === value && pattern.test(err.message))
      }
    })

    it('starts a path backend chosen by its name, with the options given for it, and checks what it binds', async () => {
      const choice = await resolveBackend('./wrapped-cpu-backend.js', FIXTURES)
      const info = await withComputeBackend(choice, { cwd: FIXTURES, options: { label: 'chosen', threads: 0 } }, async be => {
        const t = be.upload(new Float32Array([1, 2]), [2])
        const sq = await be.sumSquares(t)
        be.free(t)
        return { name: be.info.name, sq }
      })
      assert.deepEqual(info, { name: 'chosen', sq: 5 })
      await verifyBackend(choice, { cwd: FIXTURES, options: { threads: 0 } })
    })

    it('verifyBackend refuses a backend plugin that binds something else, naming the value, plugin and file', async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'lsw-backend-'))
      try {
        const file = path.join(dir, 'hollow.js')
        await writeFile(file, "export default { name: 'hollow', kind: 'backend', provides: ['layerswarm:ComputeBackend'], register (ctx) { ctx.container.registerInstance('layerswarm:ComputeBackend', { info: {} }) } }\n")
        const choice = await resolveBackend('./hollow.js', dir)
        await assert.rejects(verifyBackend(choice, { cwd: dir }), (err: unknown) => err instanceof BackendChoiceError &&
          err.message.startsWith(`--backend ./hollow.js: plugin "hollow" (${file}) cannot run: what it binds under "layerswarm:ComputeBackend" is not a ComputeBackend: "info.name" must be a string; missing methods alloc,`))
      } finally {
        await rm(dir, { recursive: true, force: true })
      }
    })
  })

  describe('registry', () => {
    it('maps every built-in name to a module that exists and exports a valid plugin', async () => {
      assert.ok(builtinPluginNames().includes('backend-cpu'))
      for (const name of builtinPluginNames()) {
        const imported = await importPluginModule(name)
        assert.equal(imported.source, 'builtin')
        const host = new PluginHost()
        await host.load([name])
        assert.deepEqual(host.names(), [name], `built-in "${name}" is named as registered`)
      }
    })
  })

  describe('stop(ctx): each node stops what it registered', () => {
    it('two hosts in one process load backend-cpu; stopping one leaves the other backend working', async () => {
      const a = new PluginHost({ pluginOptions: { 'backend-cpu': { threads: 0 } } })
      const b = new PluginHost({ pluginOptions: { 'backend-cpu': { threads: 0 } } })
      await a.load(['backend-cpu'])
      await b.load(['backend-cpu'])
      await a.start()
      await b.start()
      try {
        const beB = b.container.resolve<import('../core/contracts/index.ts').ComputeBackend>(Tokens.ComputeBackend)
        await a.stop()
        // a module-level registry of live backends used to dispose b's backend here too
        const t = beB.upload(new Float32Array([1, 2, 3]), [3])
        assert.deepEqual([...await beB.download(t) as Float32Array], [1, 2, 3])
        beB.free(t)
      } finally {
        await a.stop()
        await b.stop()
      }
    })

    it('a plugin\'s stop gets the context its register got', async () => {
      let registered: PluginContext | undefined
      let stopped: PluginContext | undefined
      const host = new PluginHost()
      await host.load([{
        name: 'ctx-probe', kind: 'service', provides: [],
        register (ctx) { registered = ctx },
        stop (ctx) { stopped = ctx }
      }])
      await host.start()
      await host.stop()
      assert.ok(registered != null)
      assert.equal(stopped, registered)
    })
  })
})
