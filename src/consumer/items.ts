import {
  type Abort,
  type Commit,
  type Deletion,
  type Expiration,
  isDurabilityLevel,
  type Mutation,
  type Prepare,
} from '../protocol/index.js';
import type { Item } from '../store/index.js';
import { StoreError } from '../store/index.js';

// A received DCP item as a store item, with its key and value copied out of the network buffer (a
// view would keep a whole socket chunk alive for as long as the item lives).

export function mutationItem(m: Mutation): Item {
  return {
    key: Buffer.from(m.key),
    value: Buffer.from(m.value),
    cas: m.cas,
    flags: m.flags,
    expiry: m.expiration,
    revSeqno: m.revSeqno,
    bySeqno: m.bySeqno,
    datatype: m.datatype,
    deleted: false,
  };
}

/** A DELETION (v1/v2) or an EXPIRATION as a tombstone. */
export function tombstoneItem(d: Deletion | Expiration, expired: boolean): Item {
  return {
    key: Buffer.from(d.key),
    value: Buffer.alloc(0),
    cas: d.cas,
    flags: 0,
    expiry: 0,
    revSeqno: d.revSeqno,
    bySeqno: d.bySeqno,
    datatype: 0,
    deleted: true,
    deleteTime: 'deleteTime' in d ? d.deleteTime : 0,
    ...(expired ? { expired: true } : {}),
  };
}

/** A DCP_PREPARE as a prepare (dcp-spec §4.15). */
export function prepareItem(p: Prepare): Item {
  if (!isDurabilityLevel(p.durabilityLevel)) {
    throw new StoreError(
      'DCPX_ERR_STORE_BAD_ITEM',
      `vb ${p.vbucket}: prepare ${p.bySeqno} has durability level ${p.durabilityLevel}`,
    );
  }
  const deleted = p.deleted !== 0;
  return {
    key: Buffer.from(p.key),
    value: deleted ? Buffer.alloc(0) : Buffer.from(p.value),
    cas: p.cas,
    flags: p.flags,
    expiry: p.expiration,
    revSeqno: p.revSeqno,
    bySeqno: p.bySeqno,
    datatype: deleted ? 0 : p.datatype,
    deleted,
    sync: { kind: 'prepare', level: p.durabilityLevel },
  };
}

/**
 * A DCP_COMMIT or DCP_ABORT as the store's resolution item: key and seqnos only (the store takes the
 * rest from the prepare it holds).
 */
export function resolutionItem(m: Commit | Abort): Item {
  const commit = 'commitSeqno' in m;
  return {
    key: Buffer.from(m.key),
    value: Buffer.alloc(0),
    cas: 0n,
    flags: 0,
    expiry: 0,
    revSeqno: 0n,
    bySeqno: commit ? m.commitSeqno : m.abortSeqno,
    datatype: 0,
    deleted: !commit,
    sync: { kind: commit ? 'commit' : 'abort', preparedSeqno: m.preparedSeqno },
  };
}
