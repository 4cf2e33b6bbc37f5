// Run by gpu-probe.ts in a child process (a broken GPU driver may crash or hang Dawn; the join must
// not): asks Dawn for its default adapter and prints one JSON line, {adapter: {...} | null} or {error}.
const say = o => { process.stdout.write(JSON.stringify(o) + '\n') }
try {
  const { create } = await import('webgpu')
  const adapter = await create([]).requestAdapter()
  if (adapter == null) {
    say({ adapter: null })
  } else {
    const i = adapter.info ?? {}
    say({ adapter: { vendor: i.vendor ?? '', architecture: i.architecture ?? '', device: i.device ?? '', description: i.description ?? '', isFallbackAdapter: i.isFallbackAdapter === true || adapter.isFallbackAdapter === true } })
  }
} catch (err) {
  say({ error: String(err?.message ?? err) })
}
process.exit(0)
