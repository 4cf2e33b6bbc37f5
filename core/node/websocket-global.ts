// @libp2p/websockets dials with the global WebSocket, which Node 20 lacks (Node 22 has it): without one,
// listening works but every /ws dial throws "WebSocket is not defined". The `ws` package (already under
// @libp2p/websockets, which listens with it) implements the same browser API. Installed only if missing.
//
// ws is an EventEmitter: an 'error' with no listener is thrown as an uncaught exception. libp2p listens
// for errors only until the socket opens, and a dial aborted while connecting makes ws emit a late
// ECONNREFUSED or "closed before the connection was established" with nobody listening, which crashed
// the process. Each socket therefore gets a permanent no-op 'error' listener; libp2p still sees errors
// through its own addEventListener while it waits.
import { createRequire } from 'node:module'

if (typeof (globalThis as any).WebSocket !== 'function') {
  const { WebSocket: WsWebSocket } = createRequire(import.meta.url)('ws')
  class GuardedWebSocket extends WsWebSocket {
    constructor (...args: any[]) {
      super(...args)
      this.on('error', () => {})
    }
  }
  Object.defineProperty(globalThis, 'WebSocket', { configurable: true, writable: true, value: GuardedWebSocket })
}
