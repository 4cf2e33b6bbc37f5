// Starts and supervises `layerswarm start ...` child processes on this machine, and guarantees
// that none outlives the launcher: each child leads its own process group (so a terminal's Ctrl-C
// reaches only the launcher, which then stops the children in order, and a kill reaches anything a
// child started), stop() sends SIGTERM then SIGKILL after a grace period, and a process 'exit'
// hook SIGKILLs whatever is left if the launcher dies of an error.
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { NodeLaunchError } from './demo-errors.ts'

export interface NodeExit { code: number | null, signal: NodeJS.Signals | null }

export interface LaunchSpec {
  /** Short name for displays and logs, e.g. "boot", "s1-b". */
  readonly name: string
  /** Arguments after `layerswarm start`. */
  readonly args: readonly string[]
  /** The child's stderr (its log) goes to this file. */
  readonly logFile: string
  readonly env?: Readonly<Record<string, string>>
}

export interface LaunchedNode {
  readonly spec: LaunchSpec
  readonly child: ChildProcess
  readonly pid: number
  readonly peerId: string
  readonly addrs: readonly string[]
  /** Set once the process exited. */
  exit: NodeExit | null
  readonly exited: Promise<NodeExit>
}

export interface LauncherOptions {
  /** bin/layerswarm.js */
  readonly bin: string
  readonly cwd: string
  /** Base environment of the children (default: ours without LAYERSWARM_* variables). */
  readonly env?: NodeJS.ProcessEnv
  /** How long a child may take to print its listening line (default 90 s: slow under load). */
  readonly startTimeoutMs?: number
}

const LISTENING = /^listening peerId=(\S+) addrs=(\S+)$/m

export class SwarmLauncher {
  readonly nodes: LaunchedNode[] = []
  private readonly opts: LauncherOptions
  private readonly onExit = (): void => { this.killAllNow() }
  private hooked = false
  /** Children spawned but not yet listening (a failed or interrupted start must not leak them). */
  private readonly pendingPids = new Set<number>()

  constructor (opts: LauncherOptions) {
    this.opts = opts
  }

  /** Spawns `node BIN start ...args` and resolves once it printed its listening line. */
  async start (spec: LaunchSpec, signal?: AbortSignal): Promise<LaunchedNode> {
    if (!this.hooked) {
      process.on('exit', this.onExit)
      this.hooked = true
    }
    const logFd = openSync(spec.logFile, 'a')
    let child: ChildProcess
    try {
      child = spawn(process.execPath, [this.opts.bin, 'start', ...spec.args], {
        cwd: this.opts.cwd,
        env: { ...(this.opts.env ?? cleanEnv()), ...spec.env },
        stdio: ['ignore', 'pipe', logFd],
        detached: true
      })
    } finally {
      closeSync(logFd) // the child holds its own copy
    }
    if (child.pid == null) throw new NodeLaunchError(`${spec.name}: could not spawn ${process.execPath}`)
    const pid = child.pid
    let exitInfo: NodeExit | null = null
    const exited = new Promise<NodeExit>(resolve => {
      child.on('exit', (code, signal) => {
        exitInfo = { code, signal }
        const n = this.nodes.find(x => x.pid === pid)
        if (n != null) n.exit = exitInfo
        resolve(exitInfo)
      })
    })
    this.pendingPids.add(pid)
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let out = ''
        const timeoutMs = this.opts.startTimeoutMs ?? 90_000
        const timer = setTimeout(() => { reject(new Error(`printed no listening line within ${timeoutMs / 1000} s`)) }, timeoutMs)
        child.stdout?.on('data', (d: Buffer) => {
          out += d.toString()
          const m = LISTENING.exec(out)
          if (m != null) { clearTimeout(timer); resolve(m[0]) }
        })
        void exited.then(e => { clearTimeout(timer); reject(new Error(`exited (${describeExit(e)}) before listening`)) })
        if (signal?.aborted === true) reject(new Error('start aborted'))
        signal?.addEventListener('abort', () => { clearTimeout(timer); reject(new Error('start aborted')) }, { once: true })
      })
      const m = LISTENING.exec(line) as RegExpExecArray
      const node: LaunchedNode = { spec, child, pid, peerId: m[1], addrs: m[2].split(','), exit: exitInfo, exited }
      child.stdout?.resume() // keep draining: a child must never block on a full stdout pipe
      this.nodes.push(node)
      return node
    } catch (err) {
      killGroup(pid, 'SIGKILL')
      await exited
      const tail = await logTail(spec.logFile, 15)
      throw new NodeLaunchError(`node ${spec.name} (pid ${pid}) ${(err as Error).message}; its log ${spec.logFile} ends with:\n${tail}`, { cause: err })
    } finally {
      this.pendingPids.delete(pid)
    }
  }

  alive (): LaunchedNode[] {
    return this.nodes.filter(n => n.exit == null)
  }

  /** Sends `signal` to the node's process group (no error if it is gone). */
  signal (node: LaunchedNode, signal: NodeJS.Signals): void {
    if (node.exit == null) killGroup(node.pid, signal)
  }

  /** SIGTERM every live child, SIGKILL those still running after graceMs; resolves when all exited. */
  async stopAll (graceMs = 15_000): Promise<void> {
    const live = this.alive()
    for (const n of live) killGroup(n.pid, 'SIGTERM')
    const timer = setTimeout(() => { for (const n of this.alive()) killGroup(n.pid, 'SIGKILL') }, graceMs)
    try {
      await Promise.all(live.map(async n => await n.exited))
    } finally {
      clearTimeout(timer)
    }
    // anything a child started in its group goes with it
    for (const n of this.nodes) killGroup(n.pid, 'SIGKILL')
    if (this.hooked) {
      process.off('exit', this.onExit)
      this.hooked = false
    }
  }

  /** Synchronous last resort (process 'exit' hook, second Ctrl-C): SIGKILL every child's group. */
  killAllNow (): void {
    for (const n of this.alive()) killGroup(n.pid, 'SIGKILL')
    for (const pid of this.pendingPids) killGroup(pid, 'SIGKILL')
  }
}

function killGroup (pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal)
  } catch {
    // ESRCH: the group is gone already
  }
}

export function describeExit (e: NodeExit): string {
  return e.signal != null ? `signal ${e.signal}` : `code ${e.code}`
}

/** Our environment without LAYERSWARM_* variables, which would change every child's config. */
export function cleanEnv (): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('LAYERSWARM_')) env[k] = v
  return env
}

export async function logTail (file: string, lines: number): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '')
  return text.split('\n').filter(l => l !== '').slice(-lines).map(l => `  ${l}`).join('\n')
}
