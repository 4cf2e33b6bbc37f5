// The dashboard page: draws each snapshot the node sends on /events (server-sent events). Peer ids,
// states and errors come from other peers: everything is written as text (textContent, text nodes),
// never as markup, so nothing a peer sends can become HTML or script here.
/* global EventSource, LayerswarmCharts */
'use strict'

const $ = id => document.getElementById(id)

/** An element with attributes and children; string children become text nodes (never markup). */
function el (tag, attrs, ...children) {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v == null || v === false) continue
    if (k === 'class') e.className = v
    else if (k.startsWith('data-')) e.dataset[k.slice(5).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = String(v)
    else e.setAttribute(k, String(v))
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? '' : String(c)))
  return e
}

const text = (id, value) => { $(id).textContent = value }
const num = (x, digits = 0) => x == null || !Number.isFinite(x) ? '–' : x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
const sci = x => x == null || !Number.isFinite(x) ? '–' : (x === 0 ? '0' : Math.abs(x) >= 1e-3 && Math.abs(x) < 1e4 ? x.toPrecision(3) : x.toExponential(2))
const short = id => id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id
const bytes = n => n == null ? '–' : n >= 1e9 ? `${num(n / 1e9, 2)} GB` : n >= 1e6 ? `${num(n / 1e6, 2)} MB` : n >= 1e3 ? `${num(n / 1e3, 1)} kB` : `${num(n)} B`

function rows (table, list, cells) {
  const body = table.querySelector('tbody')
  body.replaceChildren(...list.map(item => {
    const tr = el('tr')
    for (const c of cells(item)) tr.append(c instanceof Node && c.nodeName === 'TD' ? c : el('td', {}, c))
    return tr
  }))
}

function facts (dl, pairs) {
  dl.replaceChildren(...pairs.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]))
}

function renderStages (snap) {
  const box = $('stages')
  if (snap.stages.length === 0) {
    box.replaceChildren(el('p', { class: 'muted' }, snap.run == null ? 'no run on this node' : 'no stage known yet'))
    return
  }
  box.replaceChildren(...snap.stages.map(st => {
    const title = st.stage < 0 ? 'picking a stage' : `stage ${st.stage}`
    const mine = snap.run != null && snap.run.stage === st.stage
    const card = el('div', { class: mine ? 'stage mine' : 'stage', 'data-stage': st.stage, 'data-peers': st.peers.length },
      el('h3', {}, title, el('span', { class: 'count' }, `${st.peers.length} peer${st.peers.length === 1 ? '' : 's'}`)))
    if (st.peers.length === 0) {
      card.append(el('p', { class: st.stage >= 0 ? 'warn' : 'muted' }, st.count > 0 ? `${st.count} known, none in the view` : 'nobody serves this stage'))
      return card
    }
    const table = el('table', {}, el('thead', {}, el('tr', {}, ...['peer', 'state', 'step', 'mb/s', 'queue', 'seen'].map(h => el('th', {}, h)))), el('tbody'))
    rows(table, st.peers, p => [
      el('td', { title: p.peer }, el('code', {}, short(p.peer)), p.self ? el('span', { class: 'you' }, 'you') : ''),
      el('td', { class: `state ${p.phase}` }, `${p.state} · ${p.phase}`),
      num(p.step),
      num(p.throughput, 2),
      num(p.queue),
      p.self ? 'now' : `${num(p.seenAgoS, 1)} s ago`
    ])
    for (const [i, p] of st.peers.entries()) {
      const tr = table.tBodies[0].rows[i]
      tr.dataset.peer = p.peer
      if (p.self) tr.className = 'self'
    }
    card.append(table)
    return card
  }))
}

function renderTraffic (snap) {
  const t = snap.traffic
  const list = []
  if (t?.forward != null) list.push(['forward', t.forward, 'activations', t.codecs?.activation])
  if (t?.backward != null) list.push(['backward', t.backward, 'activation gradients', t.codecs?.gradient])
  rows($('traffic'), list, ([, f, what, codec]) => [
    `${f.from} → ${f.to}`, what, `${codec ?? 'none'}${t.bottleneck != null ? ` · k=${t.bottleneck}` : ''}`, num(f.bytesPerToken, 1), f.ratio != null ? `${num(f.ratio, 1)}× smaller` : '–'
  ])
  $('traffic-none').hidden = list.length > 0
  const tr = snap.training
  text('counters', tr == null ? '' : `microbatches done ${num(tr.microbatchesDone)}, dropped ${num(tr.microbatchesDropped)}, retried ${num(tr.microbatchesRetried)}; tokens ${num(tr.tokens)}`)
}

function renderAveraging (snap) {
  const a = snap.averaging
  $('avg-none').hidden = a != null
  $('avg-facts').hidden = a == null
  $('avg-rounds').hidden = a == null || a.history.length === 0
  if (a == null) return
  facts($('avg-facts'), [
    ['period', `every ${a.period} steps (${a.mode})`],
    ['rounds', `${num(a.rounds)} with a group, ${num(a.alone)} alone, ${num(a.failed)} failed`],
    ['last group', a.lastGroupSize == null ? '–' : `${a.lastGroupSize} nodes, ${num(a.lastMs)} ms`],
    ['divergence', `${sci(a.divergenceBefore)} before → ${sci(a.divergenceAfter)} after (‖θ‖ ${sci(a.paramNorm)})`],
    ...(a.lastError != null ? [['last error', a.lastError]] : [])
  ])
  rows($('avg-rounds'), a.history.slice(-8).reverse(), h => [num(h[0]), num(h[1]), num(h[2]), sci(h[3]), sci(h[4])])
}

function renderVerification (snap) {
  const v = snap.verification
  $('verification').hidden = v == null
  if (v == null) return
  facts($('ver-facts'), [
    ['vouched work', `${num(v.totals.microbatches)} microbatches, ${num(v.totals.tokens)} tokens`],
    ['checks', `${num(v.totals.passed)} passed, ${num(v.totals.failed)} failed, ${num(v.totals.withheld)} withheld`],
    ['convicted', num(v.totals.convicted)],
    ...(v.validator != null ? [['validator', Object.entries(v.validator).map(([k, n]) => `${k} ${n}`).join(', ')]] : [])
  ])
  rows($('ledger'), v.ledger, r => [el('td', { title: r.peer }, el('code', {}, short(r.peer))), num(r.microbatches), num(r.tokens), num(r.passed), num(r.failed), num(r.withheld), num(r.copies), r.convicted ? 'yes' : 'no'])
  $('convictions').hidden = v.convictions.length === 0
  rows($('convictions'), v.convictions, c => [el('td', { title: c.peer }, el('code', {}, short(c.peer))), c.kind, c.detail])
}

function renderChain (snap) {
  const c = snap.chain
  $('chain').hidden = c == null
  if (c == null) return
  facts($('chain-facts'), [
    ['endpoint', `${c.endpoint} (${c.connected ? 'connected' : 'not connected'})`],
    ['subnet', `netuid ${c.netuid}${c.neurons != null ? `, ${c.neurons} neurons` : ''}`],
    ['hotkey', `${c.hotkey} · uid ${c.uid ?? 'not registered'}`],
    ['peers', `${num(c.admitted)} admitted, ${num(c.refused)} refused`]
  ])
}

let charts
function render (snap) {
  charts ??= { loss: LayerswarmCharts.lossChart($('loss-chart')), rate: LayerswarmCharts.rateChart($('tps-chart')) }
  const r = snap.run
  const tr = snap.training
  text('peer-id', snap.node.peerId)
  $('peer-id').title = snap.node.peerId
  text('network', `${snap.node.network}${snap.node.bootstrapNode ? ' (bootstrap node)' : ''}`)
  text('run-id', r == null ? '–' : short(r.runId))
  text('k-state', r?.state ?? (snap.node.bootstrapNode ? 'bootstrap' : 'no run'))
  $('k-state').className = `value state ${r?.state ?? ''}`
  text('k-stage', r == null || r.stage == null ? '–' : `${r.stage} of ${r.stages}`)
  text('k-step', r == null ? '–' : `${num(r.step)} / ${num(r.steps)}`)
  text('k-loss', tr == null ? '–' : num(tr.lossLast, 3))
  text('k-eval', tr == null ? '–' : num(tr.evalLoss, 3))
  text('k-tps', tr == null ? '–' : num(tr.tokensPerS))
  text('k-mbs', tr == null ? '–' : num(tr.throughput, 2))
  text('k-queue', tr == null ? '–' : `${num(tr.queue)} / ${num(tr.maxInflight)}`)
  text('k-peers', num(snap.stages.reduce((n, s) => n + s.peers.length, 0) || snap.node.connectedPeers))
  $('run-error').hidden = r?.error == null
  text('run-error', r?.error ?? '')
  renderStages(snap)
  charts.loss.update(snap.history.loss, snap.history.evals)
  charts.rate.update(snap.history.tokensPerS)
  renderTraffic(snap)
  renderAveraging(snap)
  renderVerification(snap)
  renderChain(snap)
  facts($('node-facts'), [
    ['pid', `${snap.node.pid}, up ${num(snap.node.uptimeS)} s`],
    ['reachability', `${snap.node.reachability}; ${snap.node.connectedPeers} connected (${snap.node.direct ?? '–'} direct, ${snap.node.relayed ?? '–'} relayed)`],
    ['plugins', snap.node.plugins.join(', ') || '(none)'],
    ['addresses', snap.node.addresses.join('\n') || '(none)']
  ])
  document.body.dataset.updated = String(snap.time)
}

function connect () {
  const live = $('live')
  const source = new EventSource('/events')
  source.addEventListener('open', () => { live.textContent = 'live'; live.className = 'badge on' })
  source.addEventListener('error', () => { live.textContent = 'reconnecting'; live.className = 'badge off' })
  source.addEventListener('snapshot', ev => {
    const snap = JSON.parse(ev.data)
    if (snap != null) render(snap)
  })
}

connect()
