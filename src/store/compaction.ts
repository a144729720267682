import * as fs from 'node:fs';
import { promisify } from 'node:util';
import { StoreError } from './errors.js';
import { encodeHistoryRecord, encodeRecord, encodeSnapshotRecord } from './record-codec.js';
import type { Item, SnapshotRange } from './types.js';

// One compaction of a vBucket log file (couchstore's compaction role): the versions the vBucket holds
// at a snapshot point are written to a temp file in small slices (the event loop keeps serving), the
// records appended to the old file meanwhile are copied after them, then temp → fsync → rename →
// directory fsync. A crash at any point leaves the old file or the new one whole; the temp file is
// removed at the next start (DurableStorage.readMeta).

/** Records encoded per event-loop turn. */
const SLICE_ITEMS = 256;

export interface CompactionSource {
  /** The versions held at the snapshot point, in seqno order (items are immutable). */
  items: readonly Item[];
  historyStart: bigint;
  purgeSeqno: bigint;
  maxDeletedRevSeqno: bigint;
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
  /** Synchronously: the new file is in place (close the old descriptor, count the new size). */
  replaced(size: number): void;
  fsyncDir(): void;
}

export async function compactFile(
  file: string,
  temp: string,
  source: CompactionSource,
  hooks: CompactionHooks,
): Promise<'done' | 'abandoned'> {
  const fd = fs.openSync(temp, 'w', 0o600);
  let written = 0;
  const append = async (chunk: Buffer) => {
    await write(fd, chunk, 0, chunk.length, written);
    written += chunk.length;
  };
  try {
    const head: Buffer[] = [
      encodeHistoryRecord(source.historyStart, source.purgeSeqno, source.maxDeletedRevSeqno),
    ];
    for (let i = 0; i < source.items.length; i += SLICE_ITEMS) {
      const records = i === 0 ? head : [];
      for (const item of source.items.slice(i, i + SLICE_ITEMS)) records.push(encodeRecord(item));
      await append(Buffer.concat(records));
      if (!hooks.current()) return abandon(fd, temp);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    if (source.items.length === 0) await append(head[0]!);
    if (source.marked) await append(encodeSnapshotRecord(source.marked));
    // most of the file reaches the disk here, off the event loop; the last step syncs only the tail
    await fsync(fd);
    if (!hooks.current()) return abandon(fd, temp);
    // one synchronous turn: nothing can be appended to the old file between the copy and the rename
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
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(temp, file);
    hooks.replaced(written);
    hooks.fsyncDir();
    return 'done';
  } catch (error) {
    closeQuietly(fd);
    fs.rmSync(temp, { force: true });
    throw error;
  }
}

const write = promisify(fs.write);
const fsync = promisify(fs.fsync);

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // already closed
  }
}

function abandon(fd: number, temp: string): 'abandoned' {
  closeQuietly(fd);
  fs.rmSync(temp, { force: true });
  return 'abandoned';
}
