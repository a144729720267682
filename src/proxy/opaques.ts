// The proxy's own opaques (DESIGN.md "Takeover"): `(generation << 16) | vbucket`. Each attempt on a
// vBucket gets a new generation — that is what "reset the opaque" means — so a reply to an older
// attempt can never be mistaken for one of the current attempt.

export type ProxyCommand =
  | 'add_stream'
  | 'close_stream'
  | 'close_stream_producer'
  | 'set_vbucket'
  | 'get_vbucket';

export interface InjectedRequest {
  vbucket: number;
  command: ProxyCommand;
  generation: number;
}

export class ProxyOpaques {
  private readonly generations = new Map<number, number>();
  private readonly injected = new Map<number, InjectedRequest>();

  /** The generation in use for `vbucket` (0 before any attempt). */
  generation(vbucket: number): number {
    return this.generations.get(vbucket) ?? 0;
  }

  /** Starts a new generation for `vbucket` (a new attempt) and returns it. */
  nextGeneration(vbucket: number): number {
    const next = ((this.generations.get(vbucket) ?? 0) + 1) & 0x7fff;
    this.generations.set(vbucket, next === 0 ? 1 : next);
    return this.generations.get(vbucket)!;
  }

  /** The opaque for a command of the current generation, recorded in the injected table. */
  make(vbucket: number, command: ProxyCommand): number {
    const generation = this.generation(vbucket);
    const opaque = ((generation << 16) | vbucket) >>> 0;
    this.injected.set(opaque, { vbucket, command, generation });
    return opaque;
  }

  lookup(opaque: number): InjectedRequest | undefined {
    return this.injected.get(opaque);
  }

  /** True when `opaque` was issued for an earlier generation of its vBucket. */
  isStale(opaque: number): boolean {
    const entry = this.injected.get(opaque);
    return entry !== undefined && entry.generation !== this.generation(entry.vbucket);
  }
}
