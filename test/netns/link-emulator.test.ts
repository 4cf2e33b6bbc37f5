// The link emulator (link-emulator.py) on a two-host test bed: measured round trip and TCP rate
// against what the links were set to (wide bounds: the machine is shared), loss counted, and a
// link that is down drops everything until it is up again.
import assert from 'node:assert/strict'
import { type ChildProcess } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { netnsUnavailable } from '../netns-helpers.ts'
import { Testbed } from './testbed.ts'

const PROBE = join(dirname(fileURLToPath(import.meta.url)), 'tcp-probe.mjs')

interface ProbeResult { connectMs: number, bytes: number, seconds: number, mbps: number }

async function output (child: ChildProcess): Promise<{ code: number | null, out: string, err: string }> {
  let out = ''
  let err = ''
  child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { err += d.toString() })
  const code = await new Promise<number | null>(resolve => child.once('exit', c => resolve(c)))
  return { code, out, err }
}

async function probe (bed: Testbed, from: number, to: number, seconds: number): Promise<ProbeResult> {
  const r = await output(bed.spawn(from, process.execPath, [PROBE, 'client', bed.hosts[to].ip, '5201', String(seconds)], { stdio: ['ignore', 'pipe', 'pipe'] }))
  if (r.code !== 0) throw new Error(`probe failed (${String(r.code)}): ${r.err}`)
  return JSON.parse(r.out.trim()) as ProbeResult
}

describe('netns: the link emulator', function () {
  this.timeout(120_000)
  let bed: Testbed | undefined

  before(async function () {
    const why = netnsUnavailable()
    if (why != null) {
      console.log(`      skipped: ${why}`)
      this.skip()
    }
    bed = await Testbed.create({ tag: 'emu', hosts: 2, link: { delayMs: 20, rateBps: 20e6 }, seed: 1 })
    const server = bed.spawn(1, process.execPath, [PROBE, 'server', bed.hosts[1].ip, '5201'], { stdio: ['ignore', 'pipe', 'inherit'] })
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => { reject(new Error('the probe server did not start')) }, 20_000)
      server.stdout?.on('data', (d: Buffer) => { if (d.toString().includes('listening')) { clearTimeout(t); resolve() } })
    })
  })

  after(() => { bed?.destroy() })

  it('delays each direction and caps the rate', async () => {
    const r = await probe(bed!, 0, 1, 3)
    console.log(`      20 ms per link, 20 Mbit/s: handshake ${r.connectMs.toFixed(1)} ms, ${r.mbps.toFixed(1)} Mbit/s`)
    assert.ok(r.connectMs >= 2 * 20 * 0.95, `a round trip crosses two 20 ms links: ${r.connectMs} ms`)
    assert.ok(r.mbps <= 20 * 1.15, `the 20 Mbit/s cap holds: ${r.mbps} Mbit/s`)
    assert.ok(r.mbps >= 20 * 0.1, `and the link still carries bulk data: ${r.mbps} Mbit/s`)
  })

  it('loses packets at the set rate, and TCP still delivers', async () => {
    await bed!.setLink(bed!.hosts[0].ip, { delayMs: 5, loss: 0.05, rateBps: 0 })
    const before = (await bed!.stats()).links[bed!.hosts[0].ip]
    const r = await probe(bed!, 0, 1, 2)
    const after = (await bed!.stats()).links[bed!.hosts[0].ip]
    const sent = (after.fwd - before.fwd) + (after.lost - before.lost)
    const share = (after.lost - before.lost) / sent
    console.log(`      5% loss: ${after.lost - before.lost} of ${sent} packets lost (${(share * 100).toFixed(1)}%), ${r.mbps.toFixed(1)} Mbit/s delivered`)
    assert.ok(share > 0.02 && share < 0.1, `loss share ${share}`)
    assert.ok(r.bytes > 0)
  })

  it('drops everything while a link is down, and carries again once it is up', async () => {
    const ip = bed!.hosts[1].ip
    await bed!.setLink(bed!.hosts[0].ip, { delayMs: 5, loss: 0 })
    await bed!.linkDown(ip)
    const child = bed!.spawn(0, process.execPath, [PROBE, 'client', ip, '5201', '1'], { stdio: ['ignore', 'pipe', 'pipe'] })
    const pending = output(child)
    // the SYN is dropped: nothing answers until the link comes back
    await new Promise(resolve => setTimeout(resolve, 3000))
    const down = (await bed!.stats()).links[bed!.hosts[0].ip].down
    assert.ok(down >= 1, 'packets were dropped on the down link')
    assert.equal(child.exitCode, null, 'no connection while the link is down')
    await bed!.linkUp(ip)
    const r = await pending
    assert.equal(r.code, 0, `the connection was made once the link came up: ${r.err}`)
    const p = JSON.parse(r.out.trim()) as ProbeResult
    console.log(`      link down 3 s: the handshake took ${(p.connectMs / 1000).toFixed(1)} s (SYN retransmitted after the link came up)`)
    assert.ok(p.connectMs >= 2500)
  })

  it('prints the per-link counters once a second while asked', async () => {
    const seen: number[] = []
    let stop = (): void => {}
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => { reject(new Error(`${seen.length} counter lines in 10 s`)) }, 10_000)
      stop = bed!.onStats(s => {
        seen.push(s.t)
        if (seen.length === 2) { clearTimeout(t); resolve() }
      })
    }).finally(() => { stop() })
    assert.ok(seen[1] - seen[0] >= 0.5, `counter lines ${seen[1] - seen[0]} s apart`)
    assert.ok(bed!.lastStats?.links[bed!.hosts[0].ip] != null)
  })

  it('answers a bad command with an error', async () => {
    await assert.rejects(bed!.setLink('10.80.0.99', { delayMs: 1 }), /no such host/)
  })
})
