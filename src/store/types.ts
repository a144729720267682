import type { DurabilityLevel, FailoverEntry, VBucketState } from '../protocol/index.js';

/**
 * A version's part in a sync write (issue 14; DESIGN.md "Part 3"). Absent on plain versions.
 * - prepare: the pending write, in the log at its own seqno, never in the committed key index; at most
 *   one in flight per key (DCP_PREPARE to sync-replication consumers, nothing to others);
 * - commit: the committed version at the commit seqno, its value the prepare's (DCP_COMMIT to sync
 *   consumers, a plain MUTATION/DELETION to others);
 * - abort: a marker at the abort seqno, no value, not in the key index (DCP_ABORT to sync consumers,
 *   nothing to others).
 */
export type SyncRole =
  | { readonly kind: 'prepare'; readonly level: DurabilityLevel }
  | { readonly kind: 'commit'; readonly preparedSeqno: bigint }
  | { readonly kind: 'abort'; readonly preparedSeqno: bigint };

/** One version of a document in a vBucket's seqno-ordered log. */
export interface Item {
  /** Document key, as bytes (keys are binary on the wire). */
  readonly key: Buffer;
  readonly value: Buffer;
  readonly cas: bigint;
  /** User flags (opaque to the store). */
  readonly flags: number;
  /** Absolute expiry in unix seconds; 0 = never. */
  readonly expiry: number;
  readonly revSeqno: bigint;
  readonly bySeqno: bigint;
  readonly datatype: number;
  /** A tombstone: the document was deleted (or expired) at this seqno. */
  readonly deleted: boolean;
  /** The tombstone came from expiry (DCP sends EXPIRATION when negotiated). */
  readonly expired?: boolean;
  /** Unix seconds of the deletion (tombstones only). */
  readonly deleteTime?: number;
  /** Set on the versions of a sync write (prepare, commit, abort); absent on plain ones. */
  readonly sync?: SyncRole;
}

/** A replicated item, applied with the producer's seqno, CAS and revseqno (dcp-spec §4.8–4.10). */
export type ReplicatedItem = Item;

/** Persistent per-vBucket metadata. */
export interface VBucketMeta {
  state: VBucketState;
  failoverLog: FailoverEntry[];
  purgeSeqno: bigint;
  /** Superseded versions at or below it may be gone (rollback below it goes to 0). */
  compactedSeqno?: bigint;
  /**
   * Highest revision seqno of a purged tombstone (kv_engine's max deleted revseqno): a key created
   * with no version held starts above it, so a purge never lets a revision number go backwards.
   */
  maxDeletedRevSeqno?: bigint;
  /** The last snapshot a replica received (its range goes into the next STREAM_REQ, dcp-spec §4.4). */
  snapshot?: SnapshotRange;
}

export interface SnapshotRange {
  start: bigint;
  end: bigint;
}

/** The outcome of a KV command, in memcached's terms. */
export type KvStatus =
  | 'ok'
  | 'not_found'
  | 'exists'
  | 'not_stored'
  | 'too_big'
  | 'bad_delta'
  | 'not_my_vbucket'
  /** a prepare of the key is in flight (SYNC_WRITE_IN_PROGRESS) */
  | 'sync_write_in_progress'
  /** a prepare the node took over at promotion is being committed (SYNC_WRITE_RE_COMMIT_IN_PROGRESS) */
  | 'sync_write_recommit_in_progress';

export interface KvResult {
  status: KvStatus;
  item?: Item;
}

export type StoreOp = 'set' | 'add' | 'replace' | 'append' | 'prepend';

export interface MutateRequest {
  op: StoreOp;
  key: Buffer;
  value: Buffer;
  flags?: number;
  /** memcached expiration: 0 never, ≤ 30 days relative seconds, else absolute unix seconds. */
  expiration?: number;
  /** Non-zero: compare-and-swap against the current CAS. */
  cas?: bigint;
  datatype?: number;
}

export interface ArithmeticRequest {
  key: Buffer;
  delta: bigint;
  initial: bigint;
  /** 0xffffffff: do not create when missing (memcached semantics). */
  expiration: number;
  incr: boolean;
  cas?: bigint;
}

/** Time and randomness come in through here, so tests are deterministic (STYLE.md). */
export interface StoreClock {
  /** Milliseconds since the epoch. */
  now(): number;
}
export interface StoreRandom {
  /** A new random 64-bit vbuuid (never 0). */
  vbuuid(): bigint;
}
