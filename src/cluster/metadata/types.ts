/**
 * The cluster manager's metadata store (DESIGN.md "Cluster operations"; cluster-notes §5): etcd's data model
 * (keys with revisions, guarded transactions, watches, leases, elections) behind one interface, so the same
 * manager and the same test suite run on the embedded single-directory store and on etcd.
 *
 * Revisions are etcd's: one store-wide counter that every committed change advances by one; a key remembers
 * the revision that created it (`createRevision`) and the one that last changed it (`modRevision`).
 * Values are bytes; callers encode them (msgpackr for manager state).
 */

export type LeaseId = string;

export interface KeyValue {
  readonly key: string;
  readonly value: Uint8Array;
  readonly createRevision: number;
  readonly modRevision: number;
  /** Number of changes since creation (1 on create). */
  readonly version: number;
  /** The lease the key is attached to; it is deleted when the lease ends. */
  readonly lease?: LeaseId;
}

/** A snapshot read: the keys and the store revision they were read at. */
export interface RangeResult {
  readonly kvs: readonly KeyValue[];
  readonly revision: number;
}

/**
 * A condition of a transaction. A missing key has createRevision = modRevision = version = 0 and fails
 * every `value` compare, `!=` included (etcd's rule; test absence with `createRevision == 0`).
 */
export type Compare =
  | { readonly key: string; readonly target: 'value'; readonly op: '==' | '!='; readonly value: Uint8Array }
  | {
      readonly key: string;
      readonly target: 'createRevision' | 'modRevision' | 'version';
      readonly op: '==' | '!=' | '<' | '>';
      readonly revision: number;
    };

export type TxnOp =
  | { readonly type: 'put'; readonly key: string; readonly value: Uint8Array; readonly lease?: LeaseId }
  | { readonly type: 'delete'; readonly key: string }
  | { readonly type: 'deletePrefix'; readonly prefix: string };

export interface TxnResult {
  /** True when every compare held and the ops were applied, atomically, at `revision`. */
  readonly succeeded: boolean;
  /** The revision after the txn (the new one when it changed something, else the current one). */
  readonly revision: number;
}

export interface WatchEvent {
  readonly type: 'put' | 'delete';
  /** For a delete: the key with an empty value and the deleting revision as modRevision. */
  readonly kv: KeyValue;
}

export interface Watch {
  close(): Promise<void>;
}

/**
 * A lease held by this process. `deadline()` is this process's own bound, on its monotonic clock, before
 * which the server cannot have expired the lease (last keep-alive *sent* + TTL − margin): a leader stops
 * acting at that deadline whatever the client library reports (etcd3 reports a lost lease up to 2 x TTL
 * late; cluster-notes §3.3).
 */
export interface Lease {
  readonly id: LeaseId;
  readonly ttlMs: number;
  deadline(): number;
  /** Called once when the lease is known lost (revoked, expired, keep-alive failing past the deadline). */
  onLost(listener: (reason: Error) => void): void;
  revoke(): Promise<void>;
}

/** This process's leadership, won by `campaign`. */
export interface Leadership {
  readonly election: string;
  /** A number that only grows from one leader to the next: the leader key's create revision. */
  readonly epoch: number;
  /** The key that proves leadership; `guard()` compares its create revision with `epoch`. */
  readonly key: string;
  readonly lease: Lease;
  /** The compare every write of this leader carries ("my leader key is still mine"). */
  guard(): Compare;
  /** Gives leadership up (deletes the leader key); idempotent. */
  resign(): Promise<void>;
}

export interface LeaderInfo {
  /** What the leader campaigned with (the manager's name and HTTP address, encoded by the manager). */
  readonly value: Uint8Array;
  readonly epoch: number;
}

export interface MetadataStore {
  /** `embedded` or `etcd`, for logs, status and metrics. */
  readonly kind: 'embedded' | 'etcd';
  get(key: string): Promise<KeyValue | undefined>;
  /** Every key with this prefix, in key order, read at one revision. */
  range(prefix: string): Promise<RangeResult>;
  /** Applies `ops` atomically if every compare holds (etcd's txn; the else branch is left empty). */
  txn(compares: readonly Compare[], ops: readonly TxnOp[]): Promise<TxnResult>;
  /**
   * Calls `listener` for every change of a key under `prefix` with modRevision >= `fromRevision`, in
   * revision order (a past revision replays history still held; compacted history is an error).
   */
  watch(prefix: string, fromRevision: number, listener: (event: WatchEvent) => void): Promise<Watch>;
  /** A lease kept alive by this process until revoked or lost. */
  grantLease(ttlMs: number): Promise<Lease>;
  /**
   * Waits until this process leads `election` (at most one leader at a time, fenced by epoch), or the
   * signal aborts (then rejects with the abort reason and withdraws the candidacy).
   */
  campaign(election: string, value: Uint8Array, lease: Lease, signal?: AbortSignal): Promise<Leadership>;
  /** The current leader of `election`, if any. */
  leader(election: string): Promise<LeaderInfo | undefined>;
  /** Releases the store (revokes this process's leases; the embedded store releases its directory). */
  close(): Promise<void>;
}
