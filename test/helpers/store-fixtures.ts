import { ActiveStream } from '../../src/producer/active-stream.js';
import * as p from '../../src/protocol/index.js';
import type { Item, VBucket } from '../../src/store/index.js';

/** A replicated item at `seqno` (key `k<seqno>`, CAS = seqno), as a consumer applies it. */
export function itemAt(seqno: number): Item {
  return {
    key: Buffer.from(`k${seqno}`),
    value: Buffer.from('v'),
    cas: BigInt(seqno),
    flags: 0,
    expiry: 0,
    revSeqno: 1n,
    bySeqno: BigInt(seqno),
    datatype: 0,
    deleted: false,
  };
}

/** A producer stream of `vb` from seqno 0, forever, with no DCP_CONTROL options (plain rendering). */
export function streamFromZero(vb: VBucket): ActiveStream {
  return new ActiveStream({
    vb,
    opaque: 1,
    flags: 0,
    startSeqno: 0n,
    endSeqno: p.SEQNO_INFINITY,
    takeover: false,
    render: {
      deleteTimes: false,
      expiryOpcode: false,
      noValue: false,
      noValueKeepDatatype: false,
      markerV22: false,
    },
  });
}
