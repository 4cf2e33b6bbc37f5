// The WebSocket global installed for Node 20 must never turn a socket error into an uncaught
// exception (an aborted /ws dial used to crash the node with ECONNREFUSED).
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import '../core/node/websocket-global.ts'
import { waitFor } from './wait-helpers.ts'

async function closedPort (): Promise<number> {
  const srv = createServer()
  await new Promise<void>(resolve => srv.listen(0, '127.0.0.1', resolve))
  const port = (srv.address() as { port: number }).port
  await new Promise<void>(resolve => srv.close(() => resolve()))
  return port
}

describe('node: WebSocket global on Node 20', () => {
  it('a refused connection with no error listener closes without an uncaught exception', async () => {
    const uncaught: unknown[] = []
    const onUncaught = (err: unknown): void => { uncaught.push(err) }
    process.prependListener('uncaughtException', onUncaught)
    try {
      const port = await closedPort()
      const WS = (globalThis as any).WebSocket
      const ws = new WS(`ws://127.0.0.1:${port}`)
      // No error listener at all, like a libp2p dial whose waiter already gave up.
      const code = await new Promise<number>(resolve => ws.addEventListener('close', (e: { code: number }) => { resolve(e.code) }))
      assert.equal(typeof code, 'number')
      // close() while connecting (an aborted dial) must not throw either
      const ws2 = new WS(`ws://127.0.0.1:${port}`)
      ws2.close()
      // ws emits the abort's error, then 'close', on a later tick: once closed, any uncaught error has been thrown
      await waitFor(() => ws2.readyState === WS.CLOSED || uncaught.length > 0, {
        what: 'the aborted socket to close', timeoutMs: 5000, state: () => ({ readyState: ws2.readyState, uncaught })
      })
      assert.deepEqual(uncaught, [])
    } finally {
      process.removeListener('uncaughtException', onUncaught)
    }
  })
})
