import type { Deletion, Expiration, Mutation } from '../protocol/index.js';
import type { Item } from '../store/index.js';

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
