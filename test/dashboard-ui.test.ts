// The live dashboard (core/dashboard) of a running swarm of real `layerswarm start` processes: a
// bootstrap node, one stage-0 node serving the dashboard (`--dashboard 127.0.0.1:0`) and two
// stage-1 nodes, run as the demo runs them (its manifest: int8 codes over a k=8 bottleneck,
// averaging every 5 steps); membership as `start` runs it (heartbeat 1 s, TTL 4 s).
//  - the JSON snapshot and the server-sent events answer; wrong method, path or Host are refused;
//  - in a real headless browser (Debian's chromium through playwright-core): the page loads with
//    no console errors, shows both stages and all three peers, the loss chart gains points as
//    training advances, and a stage-1 node killed with SIGKILL disappears from the page. A
//    screenshot goes to a temp dir (and to $LAYERSWARM_DOCS_SCREENSHOT when set: docs/images);
//  - a bad --dashboard value exits 2 (start and demo);
//  - in-process: address parsing, the history's ring and rate, the snapshot built from the status types.
// Without chromium the browser test is skipped with the reason printed.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { copyFile, mkdir, stat, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { dirname, join } from 'node:path'
import { SwarmLauncher, type LaunchedNode } from '../core/demo/swarm-launcher.ts'
import { bootstrapArgs, demoManifest, trainingNodeArgs, type DemoSettings } from '../core/demo/swarm-plan.ts'
import { queryControl } from '../core/node/control-endpoint.ts'
import { BIN, ROOT, runCli } from './cli-helpers.ts'
import { removeDirs, tempDir } from './node-helpers.ts'
import { writeMicroModel } from './swarm-helpers.ts'
import { waitFor } from './wait-helpers.ts'
import { ConfigError } from '../core/errors.ts'
import { parseDashboardAddress } from '../core/dashboard/address.ts'
import { DashboardHistory, RingBuffer, thinCurve } from '../core/dashboard/history.ts'
import { buildDashboardSnapshot, type StatusJson } from '../core/dashboard/snapshot.ts'
import type { Member } from '../core/contracts/membership.ts'

const CHROMIUM = [process.env.LAYERSWARM_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find(p => p != null && p !== '' && existsSync(p))

interface HttpAnswer { status: number, headers: Record<string, string | string[] | undefined>, body: string }

/** One HTTP request to the dashboard; `firstEvent`: read a stream until its first blank line, then hang up. */
async function get (url: string, opts: { method?: string, host?: string, firstEvent?: boolean } = {}): Promise<HttpAnswer> {
  return await new Promise((resolve, reject) => {
    const u = new URL(url)
    const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: opts.method ?? 'GET', headers: opts.host != null ? { host: opts.host } : {}, timeout: 15_000 }, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => {
        body += c
        if (opts.firstEvent === true && body.includes('\n\n')) { req.destroy(); resolve({ status: res.statusCode ?? 0, headers: res.headers, body }) }
      })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body }) })
      res.on('error', reject)
    })
    req.on('timeout', () => { req.destroy(new Error(`no answer from ${url} in 15 s`)) })
    req.on('error', err => { if (!(opts.firstEvent === true && req.destroyed)) reject(err) })
    req.end()
  })
}

describe('dashboard: a 3-node swarm in a real browser', function () {
  this.timeout(600_000)
  let dir: string
  let launcher: SwarmLauncher
  let nodes: LaunchedNode[] = []
  let url: string

  before(async function () {
    dir = await tempDir('lsw-dash-')
    launcher = new SwarmLauncher({ bin: BIN, cwd: ROOT })
    const settings: DemoSettings = {
      nodes: 3,
      stages: 2,
      steps: 5000, // more than the test runs: it stops the swarm
      model: await writeMicroModel(dir),
      backend: 'cpu',
      seed: 0,
      batch: 4,
      lr: 3e-3,
      microbatches: 1,
      maxInflight: 2,
      evalBatches: 1,
      threads: 1,
      killAtStep: 0,
      averageEvery: 5,
      codec: 'int8-block',
      gradCodec: 'int8-block',
      bottleneck: 8
    }
    const manifest = join(dir, 'run-manifest.json')
    await writeFile(manifest, JSON.stringify(await demoManifest(settings)) + '\n')
    // `start` takes no membership settings: its heartbeat every 1 s and TTL of 4 s are already short,
    // and a killed node's closed connections take it out of the view at once (core/membership/view.ts)
    const config = join(dir, 'node-config.json')
    await writeFile(config, JSON.stringify({ pluginOptions: { 'backend-cpu': { threads: 1 } } }))
    try {
      const boot = await launcher.start({ name: 'boot', args: bootstrapArgs(join(dir, 'boot')), logFile: join(dir, 'boot.log') })
      nodes = await Promise.all([0, 1, 1].map(async (stage, i) => await launcher.start({
        name: `n${i}`,
        args: [
          ...trainingNodeArgs(settings, stage, join(dir, `n${i}`), config, boot.addrs[0], manifest),
          '--eval-every', '5',
          ...(i === 0 ? ['--dashboard', '127.0.0.1:0'] : [])
        ],
        logFile: join(dir, `n${i}.log`)
      })))
      // the node says where its dashboard is in its status (what the demo reads too)
      url = await waitFor(async () => {
        const st = await queryControl(join(dir, 'n0'), '/status', { timeoutMs: 5000 }) as { dashboard?: { url?: string } }
        return st.dashboard?.url
      }, { what: 'n0 to report its dashboard URL', timeoutMs: 120_000, intervalMs: 500 })
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/)
    } catch (err) {
      await launcher.stopAll(5_000)
      throw err
    }
  })

  after(async function () {
    await launcher?.stopAll(10_000)
    if (dir != null) await removeDirs([dir])
  })

  it('serves the JSON snapshot and server-sent events; refuses other methods, paths and Host names', async () => {
    const snap = await get(`${url}api/snapshot`)
    assert.equal(snap.status, 200)
    assert.match(String(snap.headers['content-type']), /application\/json/)
    const s = JSON.parse(snap.body)
    assert.equal(s.version, 1)
    assert.equal(s.node.peerId, nodes[0].peerId)
    assert.equal(s.run.stage, 0)
    assert.equal(s.run.stages, 2)
    assert.ok(Array.isArray(s.history.loss) && s.history.loss.length === 2, 'loss curve as [steps, losses]')

    const ev = await get(`${url}events`, { firstEvent: true })
    assert.equal(ev.status, 200)
    assert.match(String(ev.headers['content-type']), /text\/event-stream/)
    const data = /event: snapshot\ndata: (.*)\n\n/.exec(ev.body)
    assert.ok(data != null, `an event: snapshot frame, got ${ev.body.slice(0, 200)}`)
    assert.equal(JSON.parse(data[1]).node.peerId, nodes[0].peerId)

    const page = await get(url)
    assert.equal(page.status, 200)
    assert.match(page.body, /<script src="\/vendor\/uplot\.js"><\/script>/)
    assert.match(String(page.headers['content-security-policy']), /default-src 'self'/)
    const uplot = await get(`${url}vendor/uplot.js`)
    assert.equal(uplot.status, 200)
    assert.ok(uplot.body.includes('uPlot'), 'uPlot is served from node_modules')

    assert.equal((await get(`${url}nope`)).status, 404)
    assert.equal((await get(`${url}api/snapshot`, { method: 'POST' })).status, 405)
    // a page on another site reaching 127.0.0.1 through its own DNS name is refused
    assert.equal((await get(`${url}api/snapshot`, { host: 'attacker.example:80' })).status, 421)
  })

  it('the page in chromium: no console errors, every stage and peer, the loss curve grows, a killed node leaves the page', async function () {
    if (CHROMIUM == null) {
      console.log('      skipped: no chromium found (apt-get install chromium, or set LAYERSWARM_CHROMIUM to its path)')
      this.skip()
    }
    const { chromium } = await import('playwright-core')
    // as root chromium needs --no-sandbox (CI runs as root)
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: process.getuid?.() === 0 ? ['--no-sandbox'] : [] })
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 })
      const errors: string[] = []
      page.on('console', m => { if (m.type() === 'error') errors.push(`console: ${m.text()}`) })
      page.on('pageerror', e => { errors.push(`page: ${e.message}`) })
      page.on('requestfailed', r => { if (!r.url().endsWith('/events')) errors.push(`request failed: ${r.url()}`) })
      await page.goto(url, { waitUntil: 'load', timeout: 60_000 })

      // every stage, and every peer of the swarm, in its stage's card
      await page.waitForSelector('[data-stage="0"]', { timeout: 60_000 })
      await page.waitForSelector('[data-stage="1"]', { timeout: 60_000 })
      for (const [i, stage] of [[0, 0], [1, 1], [2, 1]]) {
        await page.waitForSelector(`[data-stage="${stage}"] tr[data-peer="${nodes[i].peerId}"]`, { timeout: 120_000 })
      }
      assert.equal(await page.locator(`tr.self[data-peer="${nodes[0].peerId}"]`).count(), 1, 'this node is marked as itself')

      // the loss chart gains points as training advances
      const points = async (): Promise<number> => Number(await page.locator('#loss-chart').getAttribute('data-points'))
      const first = await points()
      // for the docs' picture, a longer curve (bounded: the check below needs only 3 points)
      const docs = process.env.LAYERSWARM_DOCS_SCREENSHOT
      const more = docs != null && docs !== '' ? 40 : 3
      await waitFor(async () => await points() >= first + more, { what: `${more} more loss points than ${first}`, timeoutMs: 240_000, intervalMs: 500, state: points })
      assert.equal(await page.locator('#loss-chart canvas').count() > 0, true, 'uPlot drew a canvas')
      await waitFor(async () => (await page.locator('#k-tps').textContent()) !== '–', { what: 'a tokens/s figure', timeoutMs: 60_000, intervalMs: 500 })

      const shotDir = await tempDir('lsw-dash-shot-')
      const shot = join(shotDir, 'dashboard.png')
      await page.screenshot({ path: shot, fullPage: true })
      assert.ok((await stat(shot)).size > 10_000, 'a screenshot with content')
      if (docs != null && docs !== '') {
        await mkdir(dirname(docs), { recursive: true })
        await copyFile(shot, docs)
        console.log(`      screenshot: ${docs} (${(await stat(docs)).size} bytes)`)
      }
      await removeDirs([shotDir])

      // kill -9 one stage-1 node: its connections close and its row leaves the page; the other stays
      launcher.signal(nodes[2], 'SIGKILL')
      await nodes[2].exited
      await page.waitForSelector(`tr[data-peer="${nodes[2].peerId}"]`, { state: 'detached', timeout: 60_000 })
      assert.equal(await page.locator(`[data-stage="1"] tr[data-peer="${nodes[1].peerId}"]`).count(), 1, 'the other stage-1 node is still shown')
      assert.deepEqual(errors, [], 'no console errors')
    } finally {
      await browser.close()
    }
  })
})

describe('dashboard: the --dashboard flag', function () {
  this.timeout(400_000)
  it('a bad value exits 2 with a message saying how to write it (start and demo)', async () => {
    // the in-process test below covers the parser's cases; here, that each command exits 2 on its error
    for (const [cmd, bads] of [['start', ['localhost:http', 'bad host:7070']], ['demo', ['[nope]:7070']]] as const) {
      for (const bad of bads) {
        const r = await runCli([cmd, '--dashboard', bad], { timeoutMs: 120_000 })
        assert.equal(r.code, 2, `${cmd} --dashboard ${bad}: exit ${r.code}\n${r.stderr}`)
        assert.match(r.stderr, /--dashboard .*HOST:PORT/, r.stderr)
      }
    }
  })
})

describe('dashboard: address, history and snapshot (no sockets)', () => {
  it('parses --dashboard values and refuses bad ones with a ConfigError', () => {
    assert.deepEqual(parseDashboardAddress(true), { host: '127.0.0.1', port: 7070 })
    assert.equal(parseDashboardAddress(undefined), undefined)
    assert.deepEqual(parseDashboardAddress('8080'), { host: '127.0.0.1', port: 8080 })
    assert.deepEqual(parseDashboardAddress('localhost:0'), { host: 'localhost', port: 0 })
    assert.deepEqual(parseDashboardAddress('[::1]:7071'), { host: '::1', port: 7071 })
    for (const bad of ['', ':', 'host:', 'host:-1', 'host:65536', '::1:80', '[zz]:80', 'a b:80', 'x:1e3']) {
      assert.throws(() => parseDashboardAddress(bad), (e: unknown) => e instanceof ConfigError && /--dashboard/.test(e.message), bad)
    }
  })

  it('keeps the newest points of a series in a ring, and takes tokens/s over a window', () => {
    const r = new RingBuffer(3)
    for (let i = 1; i <= 5; i++) r.push(i, 10 * i)
    assert.deepEqual(r.columns(), [[3, 4, 5], [30, 40, 50]])
    assert.deepEqual(thinCurve([[1, 1], [2, 2], [3, 3], [4, 4], [5, 5]], 2), [[1, 4, 5], [1, 4, 5]])
    const h = new DashboardHistory(10, 10)
    assert.equal(h.sample(0, 0, 1), null)
    assert.equal(h.sample(1000, 100, 1), 100)
    assert.equal(h.sample(2000, 300, 1), 150)
    assert.equal(h.sample(3000, 10, 1), null, 'a counter that went back starts the window again')
  })

  it('builds the snapshot from the status types: stages from the membership view, boundary figures, a ledger of hostile values read safely', () => {
    const member = (peer: string, stage: number, seen: number): Member => ({
      peer, stage, state: 'serving', pinned: true, since: 0, tput: 2, phase: 'training', step: 3, throughput: 1.5, queue: 1, version: '1', time: seen, seq: 1, seen
    })
    const status = {
      peerId: 'me', network: 'local', protocolPrefix: '/x', bootstrapNode: false, started: true, addresses: ['/ip4/127.0.0.1/tcp/1'], peers: ['a', 'b'],
      plugins: ['backend-cpu'], topics: [], dht: { mode: 'server', protocol: '/x/kad', routingTableSize: 2 }, bootstrap: [], dataDir: '/tmp/x', pid: 1, uptimeS: 5,
      nat: { reachability: 'unknown', publicAddrs: [], translatedIps: [], relayListen: false, relayAddrs: [] },
      connections: { direct: 2, relayed: 0, peers: [] },
      training: {
        runId: 'run', peerId: 'me', stage: 0, stages: 2, state: 'training', roles: ['stage'], step: 4, steps: 10,
        microbatchesStarted: 4, microbatchesDone: 4, microbatchesDropped: 0, microbatchesRetried: 1, tokens: 512,
        bytesForward: 0, bytesBackward: 0, boundaryBytesForward: 1024, boundaryTokensForward: 512, boundaryBytesBackward: 0, boundaryTokensBackward: 0,
        lossLast: 5, loss: [[1, 5.5], [2, 5.2], [3, 5.1], [4, 5]], evalLoss: 5.3, evals: [[2, 5.3]], lr: 1e-3,
        peersPerStage: { 0: 1, 1: 2 }, throughput: 2, maxInflight: 4, queue: 1, penalties: { total: 0, byPeer: {} },
        codecs: { activation: 'int8-block', 'activation-grad': 'int8-block' }, bottleneck: 8, averaging: null, swarm: null, assignment: null, moves: 0,
        verification: { ledger: { peers: { '<img src=x onerror=alert(1)>': { work: { 1: { forward: { microbatches: 2, tokens: 256 } } }, checks: { own: { passed: 1 }, accusation: 'junk' }, copies: 'NaN', convicted: true } }, totals: { microbatches: 2, tokens: 256, checks: { passed: 1 } } }, convictions: [{ peer: 'p', kind: 'mismatch', detail: 'd' }, null] }
      }
    } as unknown as StatusJson
    const snap = buildDashboardSnapshot({ status, members: [member('b', 1, 9_000), member('a', 1, 9_500)], self: member('me', 0, 10_000), dModel: 32, now: 10_000, history: new DashboardHistory() })
    assert.deepEqual(snap.stages.map(s => [s.stage, s.peers.map(p => p.peer)]), [[0, ['me']], [1, ['a', 'b']]])
    assert.equal(snap.stages[0].peers[0].self, true)
    assert.equal(snap.stages[1].peers[1].seenAgoS, 1)
    assert.deepEqual(snap.traffic?.forward, { from: 0, to: 1, bytesPerToken: 2, ratio: 64 })
    assert.equal(snap.traffic?.backward, null)
    assert.deepEqual(snap.history.loss, [[1, 2, 3, 4], [5.5, 5.2, 5.1, 5]])
    assert.deepEqual(snap.verification?.ledger, [{ peer: '<img src=x onerror=alert(1)>', microbatches: 2, tokens: 256, passed: 1, failed: 0, withheld: 0, copies: 0, convicted: true }])
    assert.equal(snap.verification?.convictions.length, 1)
    assert.equal(snap.run?.stage, 0)
    assert.doesNotThrow(() => JSON.stringify(snap))
  })
})
