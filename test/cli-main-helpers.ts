// The CLI's main run inside the test process (what bin/layerswarm.js runs, without a process start per
// case), and the bad-input check the CLI tests make with it: one case as a real process (its exit
// status), every case through main, each exiting 2 with its message.
import assert from 'node:assert/strict'
import { main } from '../cli/main.ts'
import { runCli } from './cli-helpers.ts'

/** main(args) with stdout and stderr captured. */
export async function runMain (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  const out = { stdout: '', stderr: '' }
  const writes = { stdout: process.stdout.write.bind(process.stdout), stderr: process.stderr.write.bind(process.stderr) }
  process.stdout.write = ((chunk: string | Uint8Array): boolean => { out.stdout += String(chunk); return true }) as typeof process.stdout.write
  process.stderr.write = ((chunk: string | Uint8Array): boolean => { out.stderr += String(chunk); return true }) as typeof process.stderr.write
  try {
    return { code: await main(args), ...out }
  } finally {
    process.stdout.write = writes.stdout
    process.stderr.write = writes.stderr
  }
}

/** `command` with each case's args exits 2 with a stderr matching its message: the first case also as a real process. */
export async function assertBadInputExits2 (command: string, cases: Array<[string[], RegExp]>, spawnTimeoutMs: number): Promise<void> {
  const spawned = await runCli([command, ...cases[0][0]], { timeoutMs: spawnTimeoutMs })
  assert.equal(spawned.code, 2, spawned.stderr)
  assert.match(spawned.stderr, cases[0][1])
  for (const [args, msg] of cases) {
    const r = await runMain([command, ...args])
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}, stderr ${r.stderr}`)
    assert.match(r.stderr, msg, args.join(' '))
  }
}
