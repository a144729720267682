// The proxy's own opaques (DESIGN.md "Takeover"). Layout of the 32 bits:
//
//   bit 31      1: an opaque the proxy made (the consumer's stream opaques count up from 1 and never get here)
//   bits 24-30  the attempt generation of the vBucket (1-127, wrapping; 0 outside takeovers)
//   bits 16-23  a per-vBucket command sequence, so that no two requests in flight share an opaque
//               (a CLOSE_STREAM never reuses the opaque of a pending ADD_STREAM of the same vBucket)
//   bits 0-15   the vBucket
//
// Each attempt on a vBucket gets a new generation — that is what "reset the opaque" means — so a reply
// to an older attempt can never be mistaken for one of the current attempt. Only requests still in
// flight are remembered: a reply that comes after its request settled is recognised by bit 31 and the
// opcode alone (see `isProxyOpaque`), and is never forwarded.

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

const MARK = 0x8000_0000;
const GENERATIONS = 0x7f;
const SEQUENCES = 0x100;

/** More requests of one vBucket in flight than the opaque layout can tell apart. */
export class OpaquesExhaustedError extends Error {
  constructor(vbucket: number) {
    super(`vb ${vbucket}: ${SEQUENCES} proxy requests already in flight`);
    this.name = 'OpaquesExhaustedError';
  }
}

export class ProxyOpaques {
  private readonly generations = new Map<number, number>();
  private readonly sequences = new Map<number, number>();
  /** Requests in flight only: an entry leaves when its request settles (`release`). */
  private readonly pending = new Map<number, InjectedRequest>();

  /** True for an opaque the proxy made (bit 31). */
  static isProxyOpaque(opaque: number): boolean {
    return (opaque & MARK) !== 0;
  }
  static generationOf(opaque: number): number {
    return (opaque >>> 24) & GENERATIONS;
  }
  static vbucketOf(opaque: number): number {
    return opaque & 0xffff;
  }

  /** The generation in use for `vbucket` (0 before any attempt). */
  generation(vbucket: number): number {
    return this.generations.get(vbucket) ?? 0;
  }

  /** Starts a new generation for `vbucket` (a new attempt) and returns it. */
  nextGeneration(vbucket: number): number {
    const next = (this.generation(vbucket) % GENERATIONS) + 1;
    this.generations.set(vbucket, next);
    return next;
  }

  /** A fresh opaque for a command of the current generation, remembered until `release`. */
  make(vbucket: number, command: ProxyCommand): number {
    const generation = this.generation(vbucket);
    let sequence = this.sequences.get(vbucket) ?? 0;
    for (let tries = 0; tries < SEQUENCES; tries++) {
      sequence = (sequence + 1) % SEQUENCES;
      const opaque = (MARK | (generation << 24) | (sequence << 16) | (vbucket & 0xffff)) >>> 0;
      if (this.pending.has(opaque)) continue;
      this.sequences.set(vbucket, sequence);
      this.pending.set(opaque, { vbucket, command, generation });
      return opaque;
    }
    throw new OpaquesExhaustedError(vbucket);
  }

  /** The request in flight with `opaque`, if any. */
  lookup(opaque: number): InjectedRequest | undefined {
    return this.pending.get(opaque);
  }

  /** Forgets a settled request. */
  release(opaque: number): void {
    this.pending.delete(opaque);
  }

  /** Requests in flight. */
  get size(): number {
    return this.pending.size;
  }
}
