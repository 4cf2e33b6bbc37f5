// A TCP probe for the link emulator's test, run inside a test-bed host:
//   tcp-probe.mjs server IP PORT          accepts connections and drains them; prints "listening"
//   tcp-probe.mjs client IP PORT SECONDS  prints one JSON line {connectMs, bytes, seconds, mbps}:
//                                         the handshake time (one round trip) and a bulk send's rate
// Every step has its own bound, so a dead link makes the client exit 1 instead of hanging.
import { connect, createServer } from 'node:net'

const [mode, host, port, secs] = process.argv.slice(2)
if (mode === 'server') {
  createServer(s => { s.on('data', () => {}); s.on('error', () => {}); s.on('end', () => s.end()) })
    .listen(Number(port), host, () => { console.log('listening') })
} else {
  const seconds = Number(secs ?? 3)
  const bound = setTimeout(() => { console.error('probe: timed out'); process.exit(1) }, (seconds + 20) * 1000)
  const t0 = performance.now()
  const s = connect(Number(port), host)
  s.on('error', err => { console.error(`probe: ${err.message}`); process.exit(1) })
  s.on('connect', () => {
    const connectMs = performance.now() - t0
    const chunk = Buffer.alloc(64 * 1024)
    const start = performance.now()
    let bytes = 0
    const pump = () => {
      while (performance.now() - start < seconds * 1000) {
        bytes += chunk.length
        if (!s.write(chunk)) { s.once('drain', pump); return }
      }
      // the server closes its side once all of it arrived: the rate counts delivered bytes
      s.end()
      s.once('close', () => {
        clearTimeout(bound)
        const secondsTaken = (performance.now() - start) / 1000
        console.log(JSON.stringify({ connectMs, bytes, seconds: secondsTaken, mbps: bytes * 8 / secondsTaken / 1e6 }))
      })
      s.resume()
    }
    pump()
  })
}
