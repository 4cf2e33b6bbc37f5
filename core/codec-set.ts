// The codecs a node can use, and the run's choice per tensor role. Built from every codec the
// plugins registered under Tokens.Codec, the built-in raw codec (core/codecs/raw.ts: wire id 0,
// `none` / `raw`, always known), and the run manifest's `codecs` (role -> codec name). Inbound
// tensors go through `decode(role, codecId, bytes)`, which refuses a codec id nobody registered
// (UnknownCodecError) and one the run did not choose for that role (CodecNotAllowedError) before any
// decoding happens. Both are CodecErrors (code ERR_CODEC), so the wire penalty table rejects the
// sending peer. Depends only on the contracts, errors and the raw codec: plugins may use it too.
import type { DependencyContainer } from 'tsyringe'
import { Tokens } from './contracts/tokens.ts'
import type { Codec, DecodedTensor, TensorRole } from './contracts/codec.ts'
import { CodecError, ConfigError } from './errors.ts'
import { rawCodec } from './codecs/raw.ts'

const ROLES: readonly TensorRole[] = ['activation', 'activation-grad', 'parameter', 'parameter-grad']

/** A message names a codec id (or a choice names a codec) that no known codec has. */
export class UnknownCodecError extends CodecError {
  readonly codecId: number | undefined
  readonly codecName: string | undefined
  constructor (what: { id?: number, name?: string }, known: readonly Codec[]) {
    const list = known.map(c => `${c.name}#${c.id}`).join(', ')
    super(`unknown codec ${what.id !== undefined ? `id ${what.id}` : `"${what.name ?? ''}"`} (known: ${list})`)
    this.codecId = what.id
    this.codecName = what.name
  }
}

/** A message uses a registered codec that the run did not choose for the tensor's role. */
export class CodecNotAllowedError extends CodecError {
  readonly role: TensorRole
  readonly codecId: number
  readonly expectedId: number
  constructor (role: TensorRole, got: Codec, expected: Codec) {
    super(`codec ${got.name}#${got.id} is not the run's codec for ${role} tensors (${expected.name}#${expected.id})`)
    this.role = role
    this.codecId = got.id
    this.expectedId = expected.id
  }
}

/** Local misconfiguration: two codecs share an id or a name, or a role's choice is missing or unknown. */
export class CodecConfigError extends ConfigError {}

export type CodecChoices = { readonly [R in TensorRole]?: string }

export class CodecSet {
  /** The registered codecs (the built-in raw codec, known to every set, is not listed). */
  readonly codecs: readonly Codec[]
  private readonly ids = new Map<number, Codec>()
  private readonly names = new Map<string, Codec>()
  private readonly chosen = new Map<TensorRole, Codec>()

  /**
   * `choices` maps roles to codec names (the manifest's `codecs`); a role left out accepts and
   * sends nothing. The same codec object listed twice counts once; two different codecs with one
   * id or one name (aliases included) are a CodecConfigError, as is a choice naming no known codec.
   */
  constructor (codecs: Iterable<Codec>, choices: CodecChoices = {}) {
    this.add(rawCodec)
    const list: Codec[] = []
    for (const c of codecs) {
      if (c === rawCodec || list.includes(c)) continue
      this.add(c)
      list.push(c)
    }
    this.codecs = Object.freeze(list)
    for (const [role, name] of Object.entries(choices) as Array<[TensorRole, string | undefined]>) {
      if (!ROLES.includes(role)) throw new CodecConfigError(`unknown tensor role "${role}" (roles: ${ROLES.join(', ')})`)
      if (name === undefined) continue
      const c = this.names.get(name)
      if (c == null) throw new CodecConfigError(`the run chooses codec "${name}" for ${role} tensors, but no plugin registered it (known: ${this.nameList().join(', ')})`)
      this.chosen.set(role, c)
    }
  }

  /** Every name a run may choose: the raw codec's, then the registered codecs' (aliases included). */
  nameList (): string[] {
    return [...this.names.keys()]
  }

  /** Every codec bound under Tokens.Codec in `container` (none bound: an empty set). */
  static fromContainer (container: DependencyContainer, choices: CodecChoices = {}): CodecSet {
    const codecs = container.isRegistered(Tokens.Codec, true) ? container.resolveAll<Codec>(Tokens.Codec) : []
    return new CodecSet(codecs, choices)
  }

  byId (id: number): Codec {
    const c = this.ids.get(id)
    if (c == null) throw new UnknownCodecError({ id }, [rawCodec, ...this.codecs])
    return c
  }

  byName (name: string): Codec {
    const c = this.names.get(name)
    if (c == null) throw new UnknownCodecError({ name }, [rawCodec, ...this.codecs])
    return c
  }

  /** The codec the run chose for `role`; CodecConfigError when it chose none. */
  forRole (role: TensorRole): Codec {
    const c = this.chosen.get(role)
    if (c == null) throw new CodecConfigError(`the run chose no codec for ${role} tensors`)
    return c
  }

  /** The codec for an inbound tensor of `role` sent with `codecId`, or UnknownCodecError / CodecNotAllowedError. */
  accept (role: TensorRole, codecId: number): Codec {
    const c = this.byId(codecId)
    const expected = this.chosen.get(role)
    if (expected !== c) {
      if (expected == null) throw new CodecError(`this run chose no codec for ${role} tensors, so none are accepted`)
      throw new CodecNotAllowedError(role, c, expected)
    }
    return c
  }

  /** Encodes an outbound tensor with the role's codec; the id goes in the frame header. */
  encode (role: TensorRole, data: Float32Array, shape: readonly number[]): { codecId: number, bytes: Uint8Array } {
    const c = this.forRole(role)
    return { codecId: c.id, bytes: c.encode(data, shape, role) }
  }

  /** Checks the codec for the role, then decodes (CodecError on bad bytes). */
  decode (role: TensorRole, codecId: number, bytes: Uint8Array): DecodedTensor {
    return this.accept(role, codecId).decode(bytes)
  }

  private add (c: Codec): void {
    const byId = this.ids.get(c.id)
    if (byId != null) throw new CodecConfigError(`codecs "${byId.name}" and "${c.name}" share wire id ${c.id}`)
    for (const name of [c.name, ...(c.aliases ?? [])]) {
      const byName = this.names.get(name)
      if (byName != null) throw new CodecConfigError(`two different codecs are named "${name}" (ids ${byName.id} and ${c.id})`)
    }
    this.ids.set(c.id, c)
    for (const name of [c.name, ...(c.aliases ?? [])]) this.names.set(name, c)
  }
}
