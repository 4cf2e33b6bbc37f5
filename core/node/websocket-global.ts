// @libp2p/websockets dials with the global WebSocket, which Node 20 lacks (Node 22 has it): without one,
// listening works but every /ws dial throws "WebSocket is not defined". The `ws` package (already under
// @libp2p/websockets, which listens with it) implements the same browser API. Installed only if missing.
import { createRequire } from 'node:module'

if (typeof (globalThis as any).WebSocket !== 'function') {
  const { WebSocket } = createRequire(import.meta.url)('ws')
  Object.defineProperty(globalThis, 'WebSocket', { configurable: true, writable: true, value: WebSocket })
}
