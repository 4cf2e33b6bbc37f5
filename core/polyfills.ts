// Node 20 lacks Promise.withResolvers, which the libp2p 3 stack calls. This module must be
// imported before any libp2p module (core/index.ts and cli/main.ts import it first).
import 'reflect-metadata'

if (typeof (Promise as any).withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers<T> () {
      let resolve!: (value: T | PromiseLike<T>) => void
      let reject!: (reason?: unknown) => void
      const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej })
      return { promise, resolve, reject }
    }
  })
}
