import { DcpxError, SEQNO_INFINITY, type SnapshotMarker, type StreamReqRequest } from '../protocol/index.js';
import type { StreamPosition } from './position.js';

/** A stream broke the ordering rules (dcp-spec §8 step 3): an error for that stream only. */
export class StreamError extends DcpxError {
  readonly vbucket: number;
  constructor(vbucket: number, message: string) {
    super('DCPX_ERR_STREAM', `vb ${vbucket}: ${message}`);
    this.vbucket = vbucket;
  }
}

export type PassiveStreamState = 'requesting' | 'reading' | 'dead';

/**
 * The consuming side of one stream (kv_engine's PassiveStream): its opaque, the position it resumes
 * from, and the ordering checks every marker and item must pass. Shared by the node's consumer and the
 * client-mode DcpClient.
 */
export class PassiveStream {
  state: PassiveStreamState = 'requesting';
  private snapStart: bigint;
  private snapEnd: bigint;
  private last: bigint;
  private vbuuid: bigint;
  /** A marker was received and its snapshot is not complete. */
  private inSnapshot = false;
  itemsReceived = 0;

  constructor(
    readonly vbucket: number,
    readonly opaque: number,
    readonly flags: number,
    from: StreamPosition,
    readonly endSeqno: bigint = SEQNO_INFINITY,
  ) {
    this.last = from.seqno;
    this.vbuuid = from.vbuuid;
    this.snapStart = from.snapshotStart;
    this.snapEnd = from.snapshotEnd;
  }

  get position(): StreamPosition {
    return {
      vbuuid: this.vbuuid,
      seqno: this.last,
      snapshotStart: this.snapStart,
      snapshotEnd: this.snapEnd,
    };
  }

  /** The STREAM_REQ for the current position (the same opaque on every round, dcp-spec §5.4). */
  request(): StreamReqRequest {
    return {
      opaque: this.opaque,
      vbucket: this.vbucket,
      flags: this.flags,
      startSeqno: this.last,
      endSeqno: this.endSeqno,
      vbucketUuid: this.vbuuid,
      snapStartSeqno: this.snapStart,
      snapEndSeqno: this.snapEnd,
    };
  }

  /** Re-positions before another STREAM_REQ round (after a rollback). */
  reposition(position: StreamPosition): void {
    this.last = position.seqno;
    this.vbuuid = position.vbuuid;
    this.snapStart = position.snapshotStart;
    this.snapEnd = position.snapshotEnd;
    this.inSnapshot = false;
  }

  /** The producer accepted: the newest failover entry is the branch we now follow. */
  accepted(vbuuid: bigint): void {
    this.vbuuid = vbuuid;
    this.state = 'reading';
  }

  /** Checks and records a snapshot marker. */
  marker(marker: SnapshotMarker): void {
    if (marker.startSeqno > marker.endSeqno) {
      throw new StreamError(
        this.vbucket,
        `snapshot marker ${marker.startSeqno}..${marker.endSeqno} is reversed`,
      );
    }
    if (marker.endSeqno < this.last) {
      throw new StreamError(
        this.vbucket,
        `snapshot ${marker.startSeqno}..${marker.endSeqno} ends at or before seqno ${this.last} already held`,
      );
    }
    this.snapStart = marker.startSeqno;
    this.snapEnd = marker.endSeqno;
    this.inSnapshot = true;
  }

  /** Checks an item's seqno (strictly increasing, inside the current snapshot) and records it. */
  item(seqno: bigint): void {
    if (!this.inSnapshot)
      throw new StreamError(this.vbucket, `item ${seqno} arrived before any snapshot marker`);
    if (seqno <= this.last)
      throw new StreamError(this.vbucket, `seqno ${seqno} does not increase past ${this.last}`);
    if (seqno < this.snapStart || seqno > this.snapEnd) {
      throw new StreamError(
        this.vbucket,
        `seqno ${seqno} lies outside its snapshot ${this.snapStart}..${this.snapEnd}`,
      );
    }
    this.last = seqno;
    this.itemsReceived++;
  }

  /** SEQNO_ADVANCED: the position moves without an item. */
  advance(seqno: bigint): void {
    if (seqno > this.last) this.last = seqno;
  }
}
