import type { Logger } from '../protocol/index.js';
import { type ClusterSnapshot, encode, keys } from './layout.js';
import type { Compare, MetadataStore, TxnOp } from './metadata/types.js';
import type { ManagerMetrics } from './metrics.js';
import type { NodeGateway } from './node-gateway.js';
import type { CrashPoints } from './steps.js';
import type { LeaderTerm } from './term.js';

/** What operations and the janitor work with under one leadership tenure. */
export interface LeaderContext {
  readonly term: LeaderTerm;
  readonly store: MetadataStore;
  readonly gateway: NodeGateway;
  readonly crash: CrashPoints;
  readonly log: Logger;
  readonly metrics: ManagerMetrics;
}

/** Compare: the key does not exist. */
export function absent(key: string): Compare {
  return { key, target: 'version', op: '==', revision: 0 };
}

/** Compare: the key holds exactly these bytes (the marker compare: it carries the writer's epoch). */
export function holds(key: string, value: Uint8Array): Compare {
  return { key, target: 'value', op: '==', value };
}

/** Compare: the key was not changed since the snapshot (or is still absent). */
export function unchangedSince(snapshot: ClusterSnapshot, key: string): Compare {
  return { key, target: 'modRevision', op: '==', revision: snapshot.entries.get(key)?.modRevision ?? 0 };
}

export function put(key: string, value: unknown): TxnOp {
  return { type: 'put', key, value: encode(value) };
}

export function putBytes(key: string, value: Uint8Array): TxnOp {
  return { type: 'put', key, value };
}

export function del(key: string): TxnOp {
  return { type: 'delete', key };
}

/** The op that bumps the config revision (every change of nodes or map carries it). */
export function bumpConfig(snapshot: ClusterSnapshot): TxnOp {
  return put(keys.configRevision, snapshot.configRevision + 1);
}
