// Shared by the pipeline tests: real libp2p nodes (TCP + noise + yamux) on 127.0.0.1 wired to each
// other, a static PeerSource, a tiny model and a small repetitive corpus.
import '../core/polyfills.ts'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import type { Frame, FramedStream } from '../core/wire/index.ts'
import type { ComputeBackend } from '../core/contracts/backend.ts'
import { loadCorpus, type Corpus } from '../core/data/index.ts'
import { defaultManifest, type RunManifest } from '../core/run/manifest.ts'
import { validateModelConfig } from '../core/model/config.ts'
import type { PipelineNode } from '../core/pipeline/pipeline-node.ts'
import type { PeerSource } from '../core/pipeline/router.ts'
import { createCpuBackend } from '../plugins/backend-cpu/index.ts'
import { createTestNode, stopNodes } from './wire-helpers.ts'

export const TINY = { vocabSize: 256, blockSize: 16, nLayer: 3, nHead: 2, dModel: 32 }

export function tinyManifest (over: {
  stages?: number, steps?: number, batch?: number, seqLen?: number, lr?: number, warmup?: number, clip?: number, seed?: number, name?: string,
  /** Boundary codecs (activation, activation-grad); default none (raw f32). */
  codec?: string, gradCodec?: string, bottleneck?: number | null
} = {}): RunManifest {
  return defaultManifest({
    name: over.name ?? 'pipeline-test',
    model: TINY,
    stages: { count: over.stages ?? 2, split: null },
    data: { corpus: 'test', seed: over.seed ?? 1, tokenizer: 'byte', batchSize: over.batch ?? 2, seqLen: over.seqLen ?? 16 },
    optimizer: { lr: over.lr ?? 3e-3, warmup: over.warmup ?? 2, steps: over.steps ?? 4, clip: over.clip ?? 0 },
    codecs: { activation: over.codec ?? 'none', 'activation-grad': over.gradCodec ?? over.codec ?? 'none', parameter: 'none', 'parameter-grad': 'none' },
    bottleneck: over.bottleneck ?? null
  }, { validateModel: validateModelConfig })
}

/** A settable map stage -> peer ids. */
export class StaticSource implements PeerSource {
  readonly map = new Map<number, string[]>()
  peersForStage (stage: number): string[] { return [...(this.map.get(stage) ?? [])] }
  set (stage: number, peers: string[]): void { this.map.set(stage, peers) }
}

/** n libp2p nodes, every pair connected (so each knows the others' addresses). */
export async function connectedNodes (n: number, keys: readonly PrivateKey[] = []): Promise<Libp2p[]> {
  const nodes: Libp2p[] = []
  for (let i = 0; i < n; i++) {
    const node = await createTestNode(keys[i])
    await node.start()
    nodes.push(node)
  }
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) await nodes[i].dial(nodes[j].getMultiaddrs()[0])
  }
  return nodes
}

export function repetitiveText (): string {
  const words = ['alpha', 'beta', 'gamma', 'delta', 'omega']
  const paras: string[] = []
  for (let i = 0; i < 600; i++) paras.push(`${i}: ${words[i % 5]} ${words[(i + 1) % 5]} ${words[(i + 2) % 5]}. ${words[i % 5]} ${words[(i + 1) % 5]}.`)
  return paras.join('\n\n') + '\n'
}

export async function tinyCorpus (dir: string): Promise<{ corpus: Corpus, path: string }> {
  const path = join(dir, 'corpus.txt')
  await writeFile(path, repetitiveText())
  return { corpus: await loadCorpus({ path, heldOutFraction: 0.05 }), path }
}

/** What a live-pipeline suite shares: a temp dir with the tiny corpus and one CPU backend for the suite; the nodes a test starts. */
export interface PipelineSuite {
  dir: string
  corpus: Corpus
  be: ComputeBackend
  /** Set by a test; stopped (pipeline nodes first) and emptied after each test. */
  libp2ps: Libp2p[]
  pnodes: PipelineNode[]
}

/** Registers the suite's mocha hooks (call inside `describe`); the fields are set once `before` has run. */
export function pipelineSuite (tmpPrefix: string): PipelineSuite {
  const s: PipelineSuite = { dir: '', corpus: undefined as unknown as Corpus, be: undefined as unknown as ComputeBackend, libp2ps: [], pnodes: [] }
  before(async () => {
    s.dir = await mkdtemp(join(tmpdir(), tmpPrefix))
    ;({ corpus: s.corpus } = await tinyCorpus(s.dir))
    s.be = await createCpuBackend({ threads: 1 })
  })
  afterEach(async () => {
    await Promise.all(s.pnodes.map(async p => { await p.stop() }))
    await stopNodes(...s.libp2ps.filter(n => n.status === 'started'))
    s.pnodes = []
    s.libp2ps = []
  })
  after(async () => {
    await s.be?.dispose()
    if (s.dir !== '') await rm(s.dir, { recursive: true, force: true })
  })
  return s
}

type SendArgs = Parameters<FramedStream['send']>

/**
 * One microbatch by hand to a stage's pipeline handler on an open stream: the activation frame, then
 * its targets request; returns the reply frame, or the error (the stream is aborted then).
 */
export async function exchangeMicrobatch (fs: FramedStream, activation: [SendArgs[0], Uint8Array], targets: [SendArgs[0], Uint8Array]): Promise<{ frame?: Frame, error?: Error }> {
  try {
    await fs.send(...activation)
    await fs.send(...targets)
    const frame = await fs.expect({ signal: AbortSignal.timeout(20_000) })
    await fs.close().catch(() => {})
    return { frame }
  } catch (err) {
    fs.abort(err as Error)
    return { error: err as Error }
  }
}
