import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { Entry } from './entry.js';
import { StoreError } from './errors.js';
import {
  encodeEntryRecord,
  encodeHistoryRecord,
  encodeSnapshotRecord,
  entryRecordBytes,
} from './record-codec.js';
import type { SnapshotRange } from './types.js';

// One compaction of a vBucket log file (couchstore's compaction role): the versions the vBucket holds
// at a snapshot point are written to a temp file in small slices (the event loop keeps serving). Then,
// in one synchronous turn, the records appended to the old file meanwhile are copied after them and
// the store starts mirroring: each later append goes to the old file and then to the temp file. The
// temp file is fsynced (off the event loop), renamed over the old one in one turn (where mirroring
// ends and appends move to the new file), and the directory is fsynced (off the event loop). No fsync
// runs on the event loop. A crash at any point leaves the old file whole with every acknowledged
// write (mirroring writes it first) until the rename, and the new one whole after it; the temp file is
// removed at the next start (DurableStorage.readMeta).

/**
 * Encoding time per event-loop turn (ms): long enough that a compaction of one vBucket's file takes a
 * few turns, short against the KV latency (the clock is read every 64 records).
 */
const SLICE_MS = 2;
/** Size of the buffers records are encoded into (a larger record gets one of its own). */
const CHUNK_BYTES = 256 * 1024;
/** Temp-file writes in flight at most (their buffers are held until written). */
const MAX_WRITES_IN_FLIGHT = 4;

export interface CompactionSource {
  /**
   * The versions held at the snapshot point, in seqno order (an entry's bytes never change; its
   * records are encoded straight from them).
   */
  entries: readonly Entry[];
  historyStart: bigint;
  purgeSeqno: bigint;
  maxDeletedRevSeqno: bigint;
  highPreparedSeqno: bigint;
  highCompletedSeqno: bigint;
  /** The replica's last snapshot marker at the snapshot point. */
  marked: SnapshotRange | undefined;
  /** Length of the old file at the snapshot point: records after it are appended during compaction. */
  cut: number;
}

export interface CompactionHooks {
  /** Still the compaction to finish (no rollback rewrote the file, the store did not close)? */
  current(): boolean;
  /**
   * Synchronously, in one turn: writes what is pending to the old file and returns its length (the
   * records between `cut` and it are copied into the new file).
   */
  flushOld(): number;
  /**
   * Synchronously, in the same turn as flushOld: from now on each append to the old file is also
   * written to `fd` from `position` on.
   */
  mirror(fd: number, position: number): void;
  /**
   * Synchronously: mirroring ends; returns the temp file's length, or undefined when a mirrored write
   * failed (the temp file is then incomplete).
   */
  stopMirror(): number | undefined;
  /** Synchronously, right after the rename: the new file is in place (appends go to it). */
  replaced(size: number): void;
  /** The directory entry of the rename is durable (after `replaced`). */
  renameDurable(): void;
}

export async function compactFile(
  file: string,
  temp: string,
  source: CompactionSource,
  hooks: CompactionHooks,
): Promise<'done' | 'abandoned'> {
  const fd = fs.openSync(temp, 'w', 0o600);
  let fdOpen = true;
  let written = 0;
  let mirroring = false;
  // positional writes of the slices are issued without waiting for each (off the event loop)
  const inFlight: Promise<unknown>[] = [];
  const append = async (chunk: Buffer) => {
    const written$ = write(fd, chunk, 0, chunk.length, written);
    written$.catch(() => {}); // handled where it is awaited (no unhandled rejection meanwhile)
    inFlight.push(written$);
    written += chunk.length;
    if (inFlight.length >= MAX_WRITES_IN_FLIGHT) {
      await inFlight[0];
      inFlight.shift();
    }
  };
  const stop = (): number | undefined => {
    if (!mirroring) return written;
    mirroring = false;
    return hooks.stopMirror();
  };
  try {
    const head = encodeHistoryRecord(
      source.historyStart,
      source.purgeSeqno,
      source.maxDeletedRevSeqno,
      source.highPreparedSeqno,
      source.highCompletedSeqno,
    );
    const { entries } = source;
    // each slice's records are encoded into one chunk, written without waiting (the chunk is held
    // until its write completes)
    let chunk = Buffer.allocUnsafe(Math.max(CHUNK_BYTES, head.length));
    let used = head.copy(chunk, 0);
    let sliceStart = performance.now();
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      const most = entryRecordBytes(entry);
      if (used + most > chunk.length) {
        if (used > 0) await append(chunk.subarray(0, used));
        chunk = Buffer.allocUnsafe(Math.max(CHUNK_BYTES, most));
        used = 0;
      }
      used = encodeEntryRecord(entry, chunk, used);
      if (i % 64 !== 63 || performance.now() - sliceStart < SLICE_MS) continue;
      if (used > 0) await append(chunk.subarray(0, used));
      chunk = Buffer.allocUnsafe(CHUNK_BYTES);
      used = 0;
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (!hooks.current()) return abandon(fd, temp, inFlight);
      sliceStart = performance.now();
    }
    const tailRecords: Buffer[] = [chunk.subarray(0, used)];
    if (source.marked) tailRecords.push(encodeSnapshotRecord(source.marked));
    const last = Buffer.concat(tailRecords);
    if (last.length > 0) await append(last);
    await Promise.all(inFlight);
    inFlight.length = 0;
    if (!hooks.current()) return abandon(fd, temp);
    // one synchronous turn: the tail is copied and mirroring starts, so that every record of the old
    // file is in the temp file too, in the same order
    const end = hooks.flushOld();
    if (end > source.cut) {
      const tail = Buffer.allocUnsafe(end - source.cut);
      const oldFd = fs.openSync(file, 'r');
      try {
        const read = fs.readSync(oldFd, tail, 0, tail.length, source.cut);
        if (read !== tail.length) {
          throw new StoreError('DCPX_ERR_STORE_WRITE', `${file}: read ${read} of ${tail.length} tail bytes`);
        }
      } finally {
        fs.closeSync(oldFd);
      }
      fs.writeSync(fd, tail, 0, tail.length, written);
      written += tail.length;
    }
    hooks.mirror(fd, written);
    mirroring = true;
    // off the event loop; the appends mirrored meanwhile are the new file's unsynced tail
    await fsync(fd);
    if (!hooks.current()) {
      stop();
      return abandon(fd, temp);
    }
    // one synchronous turn: nothing is appended between the end of mirroring and the rename
    const size = stop();
    if (size === undefined) return abandon(fd, temp);
    fdOpen = false;
    fs.closeSync(fd);
    fs.renameSync(temp, file);
    hooks.replaced(size);
    await fsyncDir(path.dirname(file));
    hooks.renameDurable();
    return 'done';
  } catch (error) {
    stop();
    await Promise.allSettled(inFlight.splice(0));
    if (fdOpen) closeQuietly(fd);
    fs.rmSync(temp, { force: true });
    throw error;
  }
}

const write = promisify(fs.write);
const fsync = promisify(fs.fsync);
const open = promisify(fs.open);
const close = promisify(fs.close);

async function fsyncDir(dir: string): Promise<void> {
  const fd = await open(dir, 'r');
  try {
    await fsync(fd);
  } finally {
    await close(fd);
  }
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // already closed
  }
}

async function abandon(fd: number, temp: string, inFlight: Promise<unknown>[] = []): Promise<'abandoned'> {
  // the writes in flight finish before the descriptor closes (its number could be reused meanwhile)
  await Promise.allSettled(inFlight.splice(0));
  closeQuietly(fd);
  fs.rmSync(temp, { force: true });
  return 'abandoned';
}
