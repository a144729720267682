import { Packr } from 'msgpackr';
import type { KeyValue, MetadataStore } from './metadata/types.js';
import type {
  ClusterNode,
  ClusterSettings,
  NodeAddress,
  NodeState,
  OperationMarker,
  OperationResult,
} from './types.js';

/**
 * The manager's keys in the metadata store (DESIGN.md "Cluster operations"), all under one prefix, values
 * msgpackr-encoded:
 *
 * | key                  | value                                                     |
 * |----------------------|-----------------------------------------------------------|
 * | `nodes/<addr>`       | `{state, group?}`                                         |
 * | `map`                | `{vbuckets, chains}`: per vBucket `[active, replica...]`  |
 * | `op/unfinished`      | the unfinished-operation marker `{opId, kind, args, epoch}` |
 * | `ops/<opId>`         | the result of a finished operation (idempotent retries)   |
 * | `config/revision`    | a counter bumped by every change of nodes or map          |
 * | `settings`           | ClusterSettings (written by init and settings)            |
 * | `target-map`         | the target map of the running rebalance (before any move) |
 * | `auto-failover`      | `{count}`: automatic failovers since the last reset       |
 */
export const PREFIX = '/dcpx/';
export const ELECTION = '/dcpx/leader';

export const keys = {
  node: (address: NodeAddress) => `${PREFIX}nodes/${address}`,
  nodesPrefix: `${PREFIX}nodes/`,
  map: `${PREFIX}map`,
  marker: `${PREFIX}op/unfinished`,
  result: (opId: string) => `${PREFIX}ops/${opId}`,
  resultsPrefix: `${PREFIX}ops/`,
  configRevision: `${PREFIX}config/revision`,
  settings: `${PREFIX}settings`,
  targetMap: `${PREFIX}target-map`,
  autoFailover: `${PREFIX}auto-failover`,
} as const;

const packr = new Packr({ useRecords: false, mapsAsObjects: true });

export function encode(value: unknown): Uint8Array {
  return packr.pack(value);
}

export function decode<T>(bytes: Uint8Array): T {
  return packr.unpack(bytes) as T;
}

/** A vBucket chain: `[active, replica...]`, null where the map has no node for a slot. */
export type Chain = readonly (NodeAddress | null)[];

export interface VBucketMap {
  readonly vbuckets: number;
  readonly chains: readonly Chain[];
}

export interface NodeRecord {
  readonly state: NodeState;
  readonly group?: string;
  /** Set when failed over: the vBuckets it held a copy of, so `recover` can catch them up (delta recovery). */
  readonly held?: readonly number[];
}

/** The stored target of a running rebalance (written with its marker, before the first move). */
export interface TargetMapRecord {
  readonly opId: string;
  readonly map: VBucketMap;
  /** Moves planned when it started (progress = 1 - left / total). */
  readonly total: number;
}

/** A map of `vbuckets` vBuckets none of which has an owner yet. */
export function emptyMap(vbuckets: number): VBucketMap {
  return { vbuckets, chains: Array.from({ length: vbuckets }, () => [null]) };
}

/** Everything the manager keeps, read at one revision, with the raw entries that compares need. */
export interface ClusterSnapshot {
  readonly revision: number;
  readonly nodes: ReadonlyMap<NodeAddress, NodeRecord>;
  /** Undefined until the first node brought a vBucket count. */
  readonly map: VBucketMap | undefined;
  readonly marker: OperationMarker | undefined;
  readonly configRevision: number;
  /** Undefined before `cluster init`. */
  readonly settings: ClusterSettings | undefined;
  /** The running (or interrupted) rebalance's target. */
  readonly target: TargetMapRecord | undefined;
  readonly autoFailoverCount: number;
  /** Raw entries by key (for value / modRevision compares). */
  readonly entries: ReadonlyMap<string, KeyValue>;
}

/** Reads the whole manager state at one revision (finished-op results excluded: read them by id). */
export async function readSnapshot(store: MetadataStore): Promise<ClusterSnapshot> {
  const { kvs, revision } = await store.range(PREFIX);
  const nodes = new Map<NodeAddress, NodeRecord>();
  const entries = new Map<string, KeyValue>();
  let map: VBucketMap | undefined;
  let marker: OperationMarker | undefined;
  let configRevision = 0;
  let settings: ClusterSettings | undefined;
  let target: TargetMapRecord | undefined;
  let autoFailoverCount = 0;
  for (const kv of kvs) {
    if (kv.key.startsWith(keys.resultsPrefix)) continue;
    entries.set(kv.key, kv);
    if (kv.key.startsWith(keys.nodesPrefix)) {
      nodes.set(kv.key.slice(keys.nodesPrefix.length), decode<NodeRecord>(kv.value));
    } else if (kv.key === keys.map) {
      map = decode<VBucketMap>(kv.value);
    } else if (kv.key === keys.marker) {
      marker = decode<OperationMarker>(kv.value);
    } else if (kv.key === keys.configRevision) {
      configRevision = decode<number>(kv.value);
    } else if (kv.key === keys.settings) {
      settings = decode<ClusterSettings>(kv.value);
    } else if (kv.key === keys.targetMap) {
      target = decode<TargetMapRecord>(kv.value);
    } else if (kv.key === keys.autoFailover) {
      autoFailoverCount = decode<{ count: number }>(kv.value).count;
    }
  }
  return { revision, nodes, map, marker, configRevision, settings, target, autoFailoverCount, entries };
}

export async function readResult(store: MetadataStore, opId: string): Promise<OperationResult | undefined> {
  const kv = await store.get(keys.result(opId));
  return kv ? decode<OperationResult>(kv.value) : undefined;
}

export function clusterNodes(snapshot: ClusterSnapshot): ClusterNode[] {
  return [...snapshot.nodes].map(([address, r]) => ({
    address,
    state: r.state,
    ...(r.group !== undefined ? { group: r.group } : {}),
  }));
}

/** The map with `node` taken out of every chain (a chain left empty keeps one null slot). */
export function withoutNode(map: VBucketMap, node: NodeAddress): VBucketMap {
  return {
    vbuckets: map.vbuckets,
    chains: map.chains.map((chain) => {
      if (!chain.includes(node)) return chain;
      const rest = chain.filter((n) => n !== node);
      return rest.length === 0 || rest.every((n) => n === null) ? [null] : trimNulls(rest);
    }),
  };
}

/** Drops trailing null replica slots (keeps the head, null or not). */
export function trimNulls(chain: Chain): Chain {
  let end = chain.length;
  while (end > 1 && chain[end - 1] === null) end--;
  return chain.slice(0, end);
}

export function sameChain(a: Chain, b: Chain): boolean {
  return a.length === b.length && a.every((n, i) => n === b[i]);
}

export function sameMap(a: VBucketMap | undefined, b: VBucketMap | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.vbuckets === b.vbuckets && a.chains.every((c, vb) => sameChain(c, b.chains[vb] ?? [null]));
}

/** The cluster config a node is given with SET_CLUSTER_CONFIG (JSON). */
export interface NodeClusterConfig {
  readonly epoch: number;
  readonly revision: number;
  readonly nodes: readonly ClusterNode[];
  readonly map: readonly Chain[];
}

export function nodeConfig(snapshot: ClusterSnapshot, epoch: number): NodeClusterConfig {
  return {
    epoch,
    revision: snapshot.configRevision,
    nodes: clusterNodes(snapshot),
    map: snapshot.map?.chains ?? [],
  };
}
