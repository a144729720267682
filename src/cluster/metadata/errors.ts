import { DcpxError } from '../../protocol/errors.js';

export type MetadataErrorCode =
  /** The store's directory is owned by another process (the message names it). */
  | 'DCPX_ERR_META_LOCKED'
  /** A file of the store cannot be read back (not a torn WAL tail, which recovery drops). */
  | 'DCPX_ERR_META_CORRUPT'
  /** Appending or syncing the write-ahead log failed: the store stops accepting writes. */
  | 'DCPX_ERR_META_WRITE'
  /** The store was closed. */
  | 'DCPX_ERR_META_CLOSED'
  /** A watch asked for history that is no longer held. */
  | 'DCPX_ERR_META_COMPACTED'
  /** A put named a lease that does not exist (any more). */
  | 'DCPX_ERR_META_NO_LEASE'
  /** The lease ended (revoked, expired, or not kept alive in time). */
  | 'DCPX_ERR_META_LEASE_LOST'
  /** etcd answered with an error or could not be reached. */
  | 'DCPX_ERR_META_ETCD';

export class MetadataError extends DcpxError {
  declare readonly code: MetadataErrorCode;
  constructor(code: MetadataErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** Who holds an embedded store's directory (the content of its LOCK file). */
export interface LockOwner {
  readonly pid: number;
  readonly name: string;
  readonly host: string;
  readonly since: string;
}

/** A second opener of an embedded store's directory; the message names the owner. */
export class MetadataLockedError extends MetadataError {
  constructor(
    readonly dir: string,
    readonly owner: LockOwner,
  ) {
    super(
      'DCPX_ERR_META_LOCKED',
      `metadata directory ${dir} is in use by manager ${owner.name} (pid ${owner.pid} on ${owner.host}, since ${owner.since})`,
    );
  }
}
