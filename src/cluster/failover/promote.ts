import { type Chain, trimNulls, type VBucketMap } from '../layout.js';
import type { NodeAddress } from '../types.js';

/**
 * The map after failing over `failed` (pure; cluster-notes §1.8 step 4). For each chain that names a failed
 * node: the failed nodes leave it; if its head failed, the survivor with the highest high *prepared* seqno
 * heads it (DESIGN.md Part 3 "Failover": a durable write acknowledged to a client is on a majority, so the
 * replica with the most prepares holds every one of them), ties broken by the high seqno (ns_server's
 * `find_max_replica`: `[Max | Chain - Max]`), remaining ties and unknown seqnos going to the earlier
 * position (positional `promote_replicas`). A chain with no survivor keeps a null head: its data is lost
 * (reported, never invented). Replication is stopped before the seqnos are read, so they do not move.
 */
export interface PromotionInput {
  readonly map: VBucketMap;
  readonly failed: ReadonlySet<NodeAddress>;
  /**
   * Per surviving node, the high seqno of each vBucket it holds (indexed by vBucket); a node absent here
   * (it did not answer) or a missing entry counts below any known seqno.
   */
  readonly seqnos: ReadonlyMap<NodeAddress, readonly (bigint | undefined)[]>;
  /**
   * Per surviving node, the high prepared seqno of each vBucket (STAT `vb_N:high_prepared_seqno`), compared
   * before the high seqno; absent or missing entries count as 0 (a node with no sync writes).
   */
  readonly preparedSeqnos?: ReadonlyMap<NodeAddress, readonly (bigint | undefined)[]>;
}

export interface Promotion {
  readonly vb: number;
  readonly from: NodeAddress;
  readonly to: NodeAddress;
  /** The new head's high seqno when it was chosen (undefined: not known). */
  readonly seqno: bigint | undefined;
}

export interface PromotionResult {
  readonly map: VBucketMap;
  /** vBuckets whose head failed and that got a surviving replica as head. */
  readonly promoted: readonly Promotion[];
  /** vBuckets that had a copy and have none left (every copy was on a failed node). */
  readonly lost: readonly number[];
}

export function promoteSurvivors({ map, failed, seqnos, preparedSeqnos }: PromotionInput): PromotionResult {
  const promoted: Promotion[] = [];
  const lost: number[] = [];
  const chains = map.chains.map((chain, vb): Chain => {
    if (!chain.some((n) => n !== null && failed.has(n))) return chain;
    const survivors = chain.filter((n): n is NodeAddress => n !== null && !failed.has(n));
    if (survivors.length === 0) {
      lost.push(vb);
      return [null];
    }
    const head = chain[0] ?? null;
    if (head === null || !failed.has(head)) return trimNulls([head, ...survivors.filter((n) => n !== head)]);
    const prepared = (node: NodeAddress) => preparedSeqnos?.get(node)?.[vb] ?? 0n;
    let best = survivors[0] as NodeAddress;
    let bestSeqno = seqnos.get(best)?.[vb];
    for (const node of survivors.slice(1)) {
      const seqno = seqnos.get(node)?.[vb];
      if (seqno === undefined) continue;
      const ahead =
        bestSeqno === undefined ||
        prepared(node) > prepared(best) ||
        (prepared(node) === prepared(best) && seqno > bestSeqno);
      if (ahead) {
        best = node;
        bestSeqno = seqno;
      }
    }
    promoted.push({ vb, from: head, to: best, seqno: bestSeqno });
    return [best, ...survivors.filter((n) => n !== best)];
  });
  return { map: { vbuckets: map.vbuckets, chains }, promoted, lost };
}

/** The vBuckets that hold a copy now and would hold none with `failed` gone (the auto-failover safety rule). */
export function copiesLost(map: VBucketMap, failed: ReadonlySet<NodeAddress>): number[] {
  const lost: number[] = [];
  map.chains.forEach((chain, vb) => {
    const copies = chain.filter((n): n is NodeAddress => n !== null);
    if (copies.length > 0 && copies.every((n) => failed.has(n))) lost.push(vb);
  });
  return lost;
}

/**
 * The map while a failover stops replication: chains headed by a failed node have no source until the
 * promotion (their replicas must not move while their seqnos are compared), other chains lose the failed
 * nodes. What `replicationTopology` of it gives each survivor is the replication that may go on meanwhile.
 */
export function stoppedMap(map: VBucketMap, failed: ReadonlySet<NodeAddress>): VBucketMap {
  return {
    vbuckets: map.vbuckets,
    chains: map.chains.map((chain): Chain => {
      const head = chain[0] ?? null;
      if (head !== null && failed.has(head)) return [null];
      return chain.some((n) => n !== null && failed.has(n))
        ? trimNulls(chain.filter((n) => n === null || !failed.has(n)))
        : chain;
    }),
  };
}

/**
 * A graceful failover's chain once `leaving`'s active was taken over by `to` (ns_server
 * `promote_replicas_for_graceful_failover`): the new head first, the leaving node last, so the node stays
 * named in the chain (its `held` vBuckets) until the final txn takes it out.
 */
export function gracefulChain(chain: Chain, leaving: NodeAddress, to: NodeAddress): Chain {
  return [to, ...chain.filter((n): n is NodeAddress => n !== null && n !== to && n !== leaving), leaving];
}

/** Short text of a vBucket list for messages (the first 8, then the count). */
export function shownVbuckets(vbs: readonly number[]): string {
  return vbs.slice(0, 8).join(',') + (vbs.length > 8 ? `,... (${vbs.length})` : '');
}
