import {
  Datatype,
  encodeAbort,
  encodeCommit,
  encodeDeletion,
  encodeExpiration,
  encodePrepare,
  encodeSeqnoAdvanced,
  encodeSetVBucketState,
  encodeSnapshotMarker,
  encodeStreamEnd,
  SnapshotFlag,
  StreamEndReason,
  VBucketState,
  writeMutationHead,
} from '../protocol/index.js';
import type { Item, SnapshotReader, VBucket } from '../store/index.js';

// One producer-side stream (kv_engine's ActiveStream), a cursor over its vBucket's log:
// backfill (one disk snapshot of the latest versions) → in-memory (memory snapshots of every version)
// → end; or, for takeover, backfill → takeover-send → takeover-wait → takeover-send → takeover-wait →
// end (dcp-spec §9). It reads the log directly, so nothing is queued per stream. While it sends a
// snapshot it holds the snapshot's versions in the vBucket's history (SnapshotReader); between
// snapshots, if it fell behind the history start (older versions gone), the next snapshot is a disk
// snapshot of the latest versions, as kv_engine backfills a dropped cursor.

export type StreamState = 'backfilling' | 'in-memory' | 'takeover-send' | 'takeover-wait' | 'dead';

/** Legal moves of the stream state machine (dcp-spec §9 table, with Pending folded into creation). */
const TRANSITIONS: Record<StreamState, readonly StreamState[]> = {
  backfilling: ['in-memory', 'takeover-send', 'dead'],
  'in-memory': ['dead'],
  'takeover-send': ['takeover-wait', 'dead'],
  'takeover-wait': ['takeover-send', 'dead'],
  dead: [],
};

export interface StreamOptions {
  vb: VBucket;
  opaque: number;
  flags: number;
  startSeqno: bigint;
  /** Last seqno to send (inclusive); SEQNO_INFINITY for an endless stream. */
  endSeqno: bigint;
  takeover: boolean;
  /** How items are rendered (open flags and controls of the connection). */
  render: RenderOptions;
}

export interface RenderOptions {
  /** OPEN flag IncludeDeleteTimes: deletions in the v2 format. */
  deleteTimes: boolean;
  /** CONTROL enable_expiry_opcode: expirations as 0x59 instead of deletions. */
  expiryOpcode: boolean;
  /** OPEN flag NoValue (and whether to keep the datatype). */
  noValue: boolean;
  noValueKeepDatatype: boolean;
  /** CONTROL max_marker_version ≥ 2.2: disk markers as v2.2 (with the purge seqno). */
  markerV22: boolean;
  /**
   * CONTROL enable_sync_writes (DESIGN.md "Part 3"): prepares, commits and aborts go as DCP_PREPARE /
   * DCP_COMMIT / DCP_ABORT; without it commits go as mutations/deletions and the others not at all.
   */
  syncWrites: boolean;
}

/** What a Success to SET_VBUCKET_STATE did to a takeover stream. */
export type TakeoverAck =
  | { outcome: 'marked-dead'; durable: Promise<void> }
  | { outcome: 'completed' | 'unexpected' };

const BATCH_ITEMS = 64;

export class ActiveStream {
  readonly vb: VBucket;
  readonly opaque: number;
  readonly flags: number;
  readonly takeover: boolean;
  readonly endSeqno: bigint;
  private stateValue: StreamState = 'backfilling';
  /** Seqno of the last item sent (or skipped as superseded). */
  private lastSent: bigint;
  /** End of the snapshot being sent; equal to lastSent between snapshots. */
  private snapEnd: bigint;
  private diskSnapshot = false;
  private firstMarker = true;
  private readonly startSeqno: bigint;
  /** Takeover: whether the pending set-state was acknowledged (the vBucket is then dead here). */
  private pendingAcked = false;
  /** Takeover: the dead state is on disk; nothing more leaves before (DESIGN.md invariant 6). */
  private deadDurable = false;
  private endReason: number | undefined;
  private readonly render: RenderOptions;
  private readonly batch: Item[] = [];
  private readonly slab = new Slab();
  private readonly reader: SnapshotReader;
  /**
   * Prepares sent on this stream and not yet resolved: a commit goes as DCP_COMMIT only for a prepare
   * sent here, an abort as DCP_ABORT for those, for prepares at or below the stream's start and in a
   * disk snapshot; otherwise the commit goes as a mutation, the abort not at all.
   */
  private readonly sentPrepares = new Set<bigint>();
  itemsSent = 0;

  constructor(options: StreamOptions) {
    this.vb = options.vb;
    this.opaque = options.opaque;
    this.flags = options.flags;
    this.takeover = options.takeover;
    this.endSeqno = options.endSeqno;
    this.lastSent = options.startSeqno;
    this.snapEnd = options.startSeqno;
    this.startSeqno = options.startSeqno;
    this.render = options.render;
    this.reader = this.vb.openReader();
    const high = this.vb.highSeqno;
    const end = high < this.endSeqno ? high : this.endSeqno;
    if (end > this.lastSent) {
      // dcp-spec §4.7: the first marker uses the requested start; a disk snapshot of the latest versions
      this.snapEnd = end;
      this.diskSnapshot = true;
      this.reader.hold(end, this.lastSent);
    }
  }

  get state(): StreamState {
    return this.stateValue;
  }
  get lastSentSeqno(): bigint {
    return this.lastSent;
  }
  get isDead(): boolean {
    return this.stateValue === 'dead';
  }

  private transition(to: StreamState): void {
    if (!TRANSITIONS[this.stateValue].includes(to)) {
      throw new Error(
        `vb ${this.vb.id} stream ${this.opaque}: illegal transition ${this.stateValue} → ${to}`,
      );
    }
    this.stateValue = to;
    if (to === 'dead') this.reader.close();
  }

  /** Ends the stream with `reason` at the next opportunity (sent before anything else). */
  end(reason: number): void {
    if (this.stateValue === 'dead' || this.endReason !== undefined) return;
    this.endReason = reason;
  }

  /** Ends the stream at once without a STREAM_END (connection gone, or a close without stream-end). */
  kill(): void {
    if (this.stateValue !== 'dead') this.transition('dead');
  }

  /** Has something to send now. */
  get ready(): boolean {
    if (this.stateValue === 'dead') return false;
    if (this.endReason !== undefined) return true;
    if (this.stateValue === 'takeover-wait') return false;
    if (this.pendingAcked && !this.deadDurable) return false;
    if (this.snapEnd > this.lastSent) return true;
    if (this.lastSent >= this.endSeqno) return true;
    if (this.vb.highSeqno > this.lastSent) return true;
    return this.takeover; // caught up: the next set-state is due
  }

  /**
   * Appends the next frames (as write pieces) to `out`, up to about `budget` bytes; returns the bytes
   * added. The caller counts them against the flow-control window.
   */
  produce(out: Buffer[], budget: number): number {
    let bytes = 0;
    while (bytes < budget && this.stateValue !== 'dead') {
      if (this.endReason !== undefined) return bytes + this.pushEnd(out, this.endReason);
      if (this.pendingAcked && !this.deadDurable) return bytes;
      if (this.snapEnd > this.lastSent) {
        bytes += this.produceItems(out, budget - bytes);
        continue;
      }
      // between snapshots
      if (this.stateValue === 'backfilling') {
        this.transition(this.takeover ? 'takeover-send' : 'in-memory');
        continue;
      }
      if (this.lastSent >= this.endSeqno) return bytes + this.pushEnd(out, StreamEndReason.OK);
      const high = this.vb.highSeqno < this.endSeqno ? this.vb.highSeqno : this.endSeqno;
      if (high > this.lastSent) {
        if (this.lastSent !== 0n && this.lastSent < this.vb.purgeSeqno) {
          // tombstones it has not sent were purged: only a rollback to 0 is correct (as kv_engine's
          // backfill below the purge seqno); the client re-requests and is told so (dcp-spec §7)
          this.end(StreamEndReason.Rollback);
          continue;
        }
        this.snapEnd = high;
        // versions after lastSent may be gone: only the latest versions can be sent (dcp-spec §4.7)
        this.diskSnapshot = this.lastSent < this.vb.historyStart;
        this.reader.hold(high, this.lastSent);
        continue;
      }
      if (this.stateValue === 'takeover-send') {
        // dcp-spec §9 steps 3 and 6: caught up, ask the consumer to take the next state
        const state = this.pendingAcked ? VBucketState.Active : VBucketState.Pending;
        const frame = encodeSetVBucketState({ opaque: this.opaque, vbucket: this.vb.id, state });
        out.push(frame);
        this.transition('takeover-wait');
        return bytes + frame.length;
      }
      return bytes;
    }
    return bytes;
  }

  /**
   * The consumer answered a SET_VBUCKET_STATE with Success. Returns what happened, for the caller to
   * log; a reply while not in takeover-wait changes nothing (kv_engine only warns). After the pending
   * ack the vBucket is dead here at once, and `durable` resolves once that is on disk: the stream
   * sends nothing more (not the SET_VBUCKET_STATE(active) above all) before it.
   */
  setStateAcked(): TakeoverAck {
    if (this.stateValue !== 'takeover-wait') return { outcome: 'unexpected' };
    if (!this.pendingAcked) {
      this.pendingAcked = true;
      this.transition('takeover-send');
      // dcp-spec §9 step 5: the old copy is dead before the new one is told to become active
      const durable = this.vb.setState(VBucketState.Dead).then(() => {
        this.deadDurable = true;
      });
      return { outcome: 'marked-dead', durable };
    }
    this.end(StreamEndReason.OK);
    return { outcome: 'completed' };
  }

  private pushEnd(out: Buffer[], reason: number): number {
    const frame = encodeStreamEnd({ opaque: this.opaque, vbucket: this.vb.id, reason });
    out.push(frame);
    this.endReason = reason;
    this.transition('dead');
    return frame.length;
  }

  /** Sends the marker (if the snapshot starts here) and a batch of the snapshot's items. */
  private produceItems(out: Buffer[], budget: number): number {
    const items = this.batch;
    items.length = 0;
    const examined = this.vb.readBatch(this.lastSent, this.snapEnd, this.diskSnapshot, BATCH_ITEMS, items);
    let bytes = 0;
    const snapshotStarts = this.markerSentFor !== this.snapEnd;
    if (snapshotStarts) this.lastPushed = this.lastSent;
    if (snapshotStarts) {
      // dcp-spec §4.7: the first marker starts at the requested start, later ones at their first item
      const start = this.firstMarker ? this.startSeqno : (items[0]?.bySeqno ?? this.lastSent + 1n);
      bytes += this.pushMarker(out, start);
    }
    for (let i = 0; i < items.length; i++) {
      // dcp-spec §6: a message goes only while the window has room, so the window is exceeded by at
      // most one message; a marker that filled it waits with its items for the next buffer ack
      if (bytes >= budget) return bytes;
      const item = items[i]!;
      const pushed = this.pushItem(out, item);
      bytes += pushed;
      this.lastSent = item.bySeqno;
      if (pushed > 0) {
        this.itemsSent++;
        this.lastPushed = item.bySeqno;
      }
    }
    // a short batch reached the snapshot's end (versions skipped as superseded count as passed)
    this.lastSent = items.length < BATCH_ITEMS ? this.snapEnd : examined;
    if (this.lastSent >= this.snapEnd) {
      this.reader.release();
      // a sync consumer acknowledges prepares at the end of their snapshot (DESIGN.md "Part 3"): when
      // the end's own seqno was not sent (an abort it cannot apply, a deduplicated version), say that
      // the snapshot is complete, as kv_engine does with SEQNO_ADVANCED
      if (this.render.syncWrites && this.lastPushed < this.snapEnd) {
        const frame = encodeSeqnoAdvanced({
          opaque: this.opaque,
          vbucket: this.vb.id,
          bySeqno: this.snapEnd,
        });
        out.push(frame);
        bytes += frame.length;
        this.lastPushed = this.snapEnd;
      }
    }
    return bytes;
  }

  /** Seqno of the last frame of the current snapshot sent (item or SEQNO_ADVANCED). */
  private lastPushed = -1n;

  /** The snapshot end a marker was last sent for. */
  private markerSentFor = -1n;

  private pushMarker(out: Buffer[], start: bigint): number {
    this.markerSentFor = this.snapEnd;
    const flags = this.diskSnapshot ? SnapshotFlag.Disk | SnapshotFlag.Checkpoint : SnapshotFlag.Memory;
    const common = {
      opaque: this.opaque,
      vbucket: this.vb.id,
      startSeqno: start,
      endSeqno: this.snapEnd,
      flags,
    };
    this.firstMarker = false;
    const frame =
      this.diskSnapshot && this.render.markerV22
        ? encodeSnapshotMarker({
            ...common,
            version: '2.2',
            maxVisibleSeqno: this.snapEnd,
            highCompletedSeqno: 0n,
            purgeSeqno: this.vb.purgeSeqno,
            highPreparedSeqno: 0n,
          })
        : encodeSnapshotMarker({ ...common, version: '1' });
    out.push(frame);
    return frame.length;
  }

  /** A sync write's version (DESIGN.md "Part 3"); undefined: render it as a plain version. */
  private pushSync(out: Buffer[], item: Item): number | undefined {
    const sync = item.sync!;
    const common = { opaque: this.opaque, vbucket: this.vb.id };
    if (sync.kind === 'prepare') {
      if (!this.render.syncWrites) return 0;
      const noValue = this.render.noValue;
      const frame = encodePrepare({
        ...common,
        cas: item.cas,
        datatype: noValue && !this.render.noValueKeepDatatype ? Datatype.Raw : item.datatype,
        bySeqno: item.bySeqno,
        revSeqno: item.revSeqno,
        flags: item.flags,
        expiration: item.expiry,
        lockTime: 0,
        nru: 0,
        deleted: item.deleted ? 1 : 0,
        durabilityLevel: sync.level,
        key: item.key,
        value: noValue || item.deleted ? EMPTY : item.value,
      });
      this.sentPrepares.add(item.bySeqno);
      out.push(frame);
      return frame.length;
    }
    const sent = this.sentPrepares.delete(sync.preparedSeqno);
    // DCP_COMMIT carries no value, so it goes only for a prepare sent on this stream: one from before the
    // stream's start may be gone from the consumer (completed and dropped by its compaction, then
    // re-opened by nothing when a rollback removed the completion after a restart), and a commit it
    // cannot apply would break the stream on every retry; as a mutation it completes the prepare the
    // consumer may still hold. An abort has no value either way: it goes for those too (a consumer
    // holding the prepare must see it end; one that does not just records the marker), and in a disk
    // snapshot, which leaves the aborted prepare out, as kv_engine's backfill sends it: skipped, the
    // replica's log stopped short of the active's (a SEQNO_ADVANCED ends the snapshot but writes
    // nothing), so a promoted replica would have re-used the abort's seqno for another write.
    const held =
      sent || (sync.kind === 'abort' && (this.diskSnapshot || sync.preparedSeqno <= this.startSeqno));
    // a disk snapshot sends committed data as plain versions (kv_engine's backfill)
    const resolution = this.render.syncWrites && held && (sync.kind === 'abort' || !this.diskSnapshot);
    if (sync.kind === 'abort' && !resolution) return 0;
    if (!resolution) return undefined;
    const resolved = {
      ...common,
      preparedSeqno: sync.preparedSeqno,
      key: item.key,
    };
    const frame =
      sync.kind === 'commit'
        ? encodeCommit({ ...resolved, commitSeqno: item.bySeqno })
        : encodeAbort({ ...resolved, abortSeqno: item.bySeqno });
    out.push(frame);
    return frame.length;
  }

  private pushItem(out: Buffer[], item: Item): number {
    if (item.sync !== undefined) {
      const sent = this.pushSync(out, item);
      if (sent !== undefined) return sent;
    }
    if (!item.deleted) {
      const noValue = this.render.noValue;
      const value = noValue ? EMPTY : item.value;
      const datatype = noValue && !this.render.noValueKeepDatatype ? Datatype.Raw : item.datatype;
      // heads are carved from a shared slab: one allocation per 64 KiB of heads, not one per item
      const size = 55 + item.key.length;
      const head = this.slab.take(size);
      writeMutationHead(
        head,
        0,
        this.opaque,
        this.vb.id,
        item.cas,
        datatype,
        item.bySeqno,
        item.revSeqno,
        item.flags,
        item.expiry,
        item.key,
        value.length,
      );
      out.push(head);
      if (value.length > 0) out.push(value);
      return size + value.length;
    }
    const base = {
      opaque: this.opaque,
      vbucket: this.vb.id,
      cas: item.cas,
      bySeqno: item.bySeqno,
      revSeqno: item.revSeqno,
    };
    let frame: Buffer;
    if (item.expired && this.render.expiryOpcode) {
      frame = encodeExpiration({ ...base, datatype: 0, deleteTime: item.deleteTime ?? 0, key: item.key });
    } else if (this.render.deleteTimes) {
      frame = encodeDeletion({
        ...base,
        version: 2,
        datatype: 0,
        deleteTime: item.deleteTime ?? 0,
        key: item.key,
        value: EMPTY,
      });
    } else {
      frame = encodeDeletion({ ...base, version: 1, datatype: 0, key: item.key, value: EMPTY });
    }
    out.push(frame);
    return frame.length;
  }
}

const EMPTY = Buffer.alloc(0);

/** Hands out small buffers carved from 64 KiB slabs (a slab is dropped once every view of it is gone). */
class Slab {
  private buffer = Buffer.allocUnsafe(0);
  private used = 0;

  take(size: number): Buffer {
    if (this.used + size > this.buffer.length) {
      this.buffer = Buffer.allocUnsafe(Math.max(64 * 1024, size));
      this.used = 0;
    }
    const view = this.buffer.subarray(this.used, this.used + size);
    this.used += size;
    return view;
  }
}
