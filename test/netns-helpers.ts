// Network namespaces for tests that need hosts other than 127.0.0.1: the chain refuses to serve a
// loopback axon, and later tests need latency and NAT. A namespace made here is this test's own
// private network: its 10.x addresses exist nowhere else, and everything started in it is killed and
// the namespace deleted when the test ends (also when the process exits on an error).
//
// Needs root and iproute2 (`ip`); `netnsUnavailable()` says why a test must skip where they are missing.
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { existsSync } from 'node:fs'

const live = new Set<string>()
let hooked = false
let counter = 0

/** Why namespaces cannot be made here, or undefined when they can. */
export function netnsUnavailable (): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces need Linux'
  if (process.getuid?.() !== 0) return 'network namespaces need root (CI runs as root)'
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' })
  } catch {
    return 'the `ip` command (iproute2) is not installed'
  }
  if (!existsSync('/var/run/netns') && !existsSync('/run')) return 'no /run to hold namespaces'
  return undefined
}

function ip (...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] })
}

/** Kills what runs in `name` and deletes it; quiet when it is already gone. */
function removeNetns (name: string): void {
  try {
    const pids = execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8' }).split(/\s+/).filter(p => /^\d+$/.test(p))
    for (const pid of pids) {
      try { process.kill(Number(pid), 'SIGKILL') } catch {}
    }
  } catch {}
  try { ip('netns', 'del', name) } catch {}
  live.delete(name)
}

export class Netns {
  private readonly children = new Set<ChildProcess>()

  private constructor (readonly name: string) {}

  /** A fresh namespace with its loopback up. `tag`: a few letters naming the test. */
  static create (tag: string): Netns {
    const name = `lsw-${tag}-${process.pid}-${counter++}`
    if (!hooked) {
      hooked = true
      // a test that throws past its after() still leaves no namespace behind
      process.on('exit', () => { for (const n of [...live]) removeNetns(n) })
      // and so does a run stopped by Ctrl-C or a CI cancel: exit() runs the 'exit' hooks (this one, the
      // swarm launcher's), which a signal's default action would skip
      for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
        process.once(sig, () => { process.exit(code) })
      }
    }
    ip('netns', 'add', name)
    live.add(name)
    try {
      ip('-n', name, 'link', 'set', 'lo', 'up')
    } catch (err) {
      removeNetns(name)
      throw err
    }
    return new Netns(name)
  }

  /**
   * Adds `addr` (e.g. 10.77.0.2) to the namespace's loopback: a host address that only this
   * namespace has, reachable from everything running in it.
   */
  addHostAddress (addr: string): void {
    ip('-n', this.name, 'addr', 'add', `${addr}/32`, 'dev', 'lo')
  }

  /** Runs `command` inside the namespace; killed by destroy(). */
  spawn (command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.name, command, ...args], options)
    this.children.add(child)
    child.once('exit', () => { this.children.delete(child) })
    return child
  }

  /** Kills every process in the namespace and deletes it. Idempotent. */
  destroy (): void {
    for (const c of this.children) {
      try { c.kill('SIGKILL') } catch {}
    }
    removeNetns(this.name)
  }
}
