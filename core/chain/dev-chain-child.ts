// The child process of startDevChain (dev-chain.ts): chopsticks on a chain spec, in instant block
// mode with no database. It runs in its own process because chopsticks in-process may keep the event
// loop alive after close(); the parent kills this one instead. It reports over the IPC channel:
// { ready: addr } once listening, { error: message } if it cannot start. It ends when the parent
// disconnects (the parent died or called stop()) or on SIGTERM/SIGINT.
//
// argv: <genesis file> <host> <port>

interface Chopsticks {
  setupWithServer: (argv: Record<string, unknown>) => Promise<{ addr: string, close: () => Promise<void> }>
  BuildBlockMode: { Instant: unknown }
}

function report (msg: Record<string, unknown>): void {
  if (process.send != null) process.send(msg)
  else process.stdout.write(JSON.stringify(msg) + '\n')
}

async function main (): Promise<void> {
  const [genesis, host, port] = process.argv.slice(2)
  // chopsticks logs through pino at LOG_LEVEL; keep it to errors unless the caller asked for more
  process.env.LOG_LEVEL ??= 'error'
  let mod: Chopsticks
  try {
    mod = await import('@acala-network/chopsticks') as unknown as Chopsticks
  } catch (err) {
    report({ error: `@acala-network/chopsticks is not installed (install @acala-network/chopsticks@1.5.1): ${(err as Error).message}`, missing: true })
    process.exit(3)
  }
  const server = await mod.setupWithServer({
    genesis,
    host,
    port: Number(port),
    'build-block-mode': mod.BuildBlockMode.Instant
  })
  const end = (): void => {
    // close() may hang (see above): give it a moment, then leave regardless
    setTimeout(() => process.exit(0), 2000).unref()
    server.close().then(() => process.exit(0), () => process.exit(0))
  }
  process.on('SIGTERM', end)
  process.on('SIGINT', end)
  process.on('disconnect', end)
  report({ ready: server.addr })
}

main().catch(err => {
  report({ error: (err as Error)?.message ?? String(err) })
  process.exit(1)
})
