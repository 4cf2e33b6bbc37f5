// The calls, storage items and module errors the chain client uses (core/chain/runtime-surface.ts),
// checked against the current subtensor runtime's metadata (../shared/chain/devnet-2026-06.scale,
// V16, spec ~425): the client is tested against spec 218 in chopsticks, and this says whether the
// same surface exists on today's chain. Differences are listed in the output.
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { routePolkadotConsole } from '../core/chain/polkadot-console.ts'
import { Metadata, TypeRegistry } from '@polkadot/types'
import { checkRuntimeSurface, SURFACE_CALLS } from '../core/chain/runtime-surface.ts'
import { silentLogger } from '../core/logger.ts'

const FILE = fileURLToPath(new URL('../../shared/chain/devnet-2026-06.scale', import.meta.url))

describe('chain: the client\'s runtime surface against the current runtime\'s metadata', function () {
  let registry: TypeRegistry
  let metadata: Metadata

  before(function () {
    if (!existsSync(FILE)) {
      console.log(`    skipped: ${FILE} is absent (the chain tests need ../shared/chain/devnet-2026-06.scale)`)
      this.skip()
    }
    // the registry warns about the current runtime's new signed extensions, which decoding metadata does not need
    routePolkadotConsole(silentLogger)
    registry = new TypeRegistry()
    metadata = new Metadata(registry, readFileSync(FILE))
    registry.setMetadata(metadata)
  })

  it('decodes (V16) and holds SubtensorModule', () => {
    assert.equal(metadata.version, 16)
    assert.ok(metadata.asLatest.pallets.some(p => p.name.toString() === 'SubtensorModule'))
  })

  it('has every call, storage item and error the client needs, with argument counts it builds', () => {
    const diffs = checkRuntimeSurface(metadata, registry)
    for (const d of diffs) console.log(`      difference: ${d.kind} ${d.what}: ${d.detail}${d.breaking ? ' (BREAKING)' : ''}`)
    if (diffs.length === 0) console.log('      no differences')
    assert.deepEqual(diffs.filter(d => d.breaking), [])
  })

  it('names the calls whose shape changed since spec 218', () => {
    const st = metadata.asLatest.pallets.find(p => p.name.toString() === 'SubtensorModule')!
    const variants = registry.lookup.getSiType(st.calls.unwrap().type).def.asVariant.variants
    const argsOf = (name: string): string[] | undefined => variants.find(v => v.name.toString() === name)?.fields.map(f => f.name.toString())
    // spec 218 takes (hotkey, mechid); the current runtime one argument: the client adapts by count
    assert.deepEqual(argsOf('register_network'), ['hotkey'])
    for (const c of SURFACE_CALLS) assert.ok(argsOf(c.name) != null, c.name)
    // the current runtime's extras the client does not use yet
    for (const extra of ['set_mechanism_weights', 'commit_timelocked_weights']) {
      if (argsOf(extra) != null) console.log(`      present but unused: ${extra}(${argsOf(extra)!.join(', ')})`)
    }
  })
})
