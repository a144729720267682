import { bumpConfig, holds, type LeaderContext, put, unchangedSince } from '../context.js';
import {
  type Chain,
  type ClusterSnapshot,
  keys,
  type NodeClusterConfig,
  nodeConfig,
  readSnapshot,
  sameChain,
  type VBucketMap,
} from '../layout.js';
import { ClusterCallError } from '../types.js';

/** The stored chain of a vBucket is neither the move's old nor its new chain: someone else changed it. */
export class ChainChangedError extends Error {
  constructor(
    readonly vb: number,
    readonly stored: Chain,
    readonly expected: Chain,
  ) {
    super(
      `vb ${vb}'s chain changed under the rebalance: stored ${JSON.stringify(stored)}, expected ${JSON.stringify(expected)}`,
    );
    this.name = 'ChainChangedError';
  }
}

/** The rebalance's marker is gone (stopped, or another leader's repair finished it). */
export class MarkerGoneError extends Error {
  constructor() {
    super('the rebalance marker is gone');
    this.name = 'MarkerGoneError';
  }
}

interface Pending {
  readonly vb: number;
  readonly from: Chain;
  readonly to: Chain;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

const ATTEMPTS = 8;

/**
 * The map updates of one rebalance, serialised (ns_vbucket_mover's `update_vbucket_map`): each move's
 * chain is written with a compare that the stored chain still equals the move's old chain; updates that
 * arrive while a write is in flight go together in the next txn (ns_server batches them the same way).
 * The txn compares the marker (the rebalance still runs), and the map and config revision keys' mod
 * revisions (nothing changed them since the read); on a conflict it reads again and retries.
 */
export class MapWriter {
  private pending: Pending[] = [];
  private flushing = false;

  constructor(
    private readonly ctx: LeaderContext,
    private readonly markerValue: Uint8Array,
    /** After each stored batch: the map and the config the nodes should now be given. */
    private readonly onWritten: (map: VBucketMap, config: NodeClusterConfig) => void,
  ) {}

  update(vb: number, from: Chain, to: Chain): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ vb, from, to, resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.pending.length > 0) {
        const batch = this.pending.splice(0);
        try {
          await this.write(batch);
        } catch (error) {
          for (const p of batch) p.reject(error);
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  private async write(all: Pending[]): Promise<void> {
    let batch = all;
    for (let attempt = 1; ; attempt++) {
      const snapshot = await readSnapshot(this.ctx.store);
      const markerKv = snapshot.entries.get(keys.marker);
      if (!markerKv || !sameBytes(markerKv.value, this.markerValue)) throw new MarkerGoneError();
      if (!snapshot.map) throw new MarkerGoneError();
      const chains = [...snapshot.map.chains];
      const accepted: Pending[] = [];
      for (const p of batch) {
        const stored = chains[p.vb] ?? [null];
        if (sameChain(stored, p.to)) accepted.push(p);
        else if (sameChain(stored, p.from)) {
          chains[p.vb] = p.to;
          accepted.push(p);
        } else p.reject(new ChainChangedError(p.vb, stored, p.from));
      }
      batch = accepted;
      if (accepted.length === 0) return;
      const map: VBucketMap = { vbuckets: snapshot.map.vbuckets, chains };
      try {
        await this.ctx.term.txn(
          [
            holds(keys.marker, this.markerValue),
            unchangedSince(snapshot, keys.map),
            unchangedSince(snapshot, keys.configRevision),
          ],
          [put(keys.map, map), bumpConfig(snapshot)],
        );
      } catch (error) {
        if (error instanceof ClusterCallError && error.errorClass === 'not-applied' && attempt < ATTEMPTS) {
          continue;
        }
        throw error;
      }
      const stored: ClusterSnapshot = { ...snapshot, map, configRevision: snapshot.configRevision + 1 };
      this.onWritten(map, nodeConfig(stored, this.ctx.term.epoch));
      for (const p of accepted) p.resolve();
      return;
    }
  }
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
