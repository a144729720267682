import { crc32 } from 'node:zlib';

/** Parses vBucket ranges like "0-31,40" into a sorted list of ids; throws on anything else. */
export function parseRanges(text: string, limit = 1024): number[] {
  const ids = new Set<number>();
  if (text.trim() === '') return [];
  for (const part of text.split(',')) {
    const match = /^\s*(\d+)(?:\s*-\s*(\d+))?\s*$/.exec(part);
    if (!match) throw new RangeError(`bad vBucket range "${part}" (expected e.g. 0-31,40)`);
    const from = Number(match[1]);
    const to = match[2] === undefined ? from : Number(match[2]);
    if (to < from) throw new RangeError(`bad vBucket range "${part}": ${to} < ${from}`);
    if (to >= limit) throw new RangeError(`vBucket ${to} is out of range 0..${limit - 1}`);
    for (let id = from; id <= to; id++) ids.add(id);
  }
  return [...ids].sort((a, b) => a - b);
}

/** Formats ids back as ranges ("0-31,40"). */
export function formatRanges(ids: readonly number[]): string {
  const sorted = [...new Set(ids)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

/** Couchbase's key → vBucket rule: ((crc32(key) >> 16) & 0x7fff) % vbuckets. */
export function vbucketOfKey(key: Buffer | string, vbuckets: number): number {
  const bytes = typeof key === 'string' ? Buffer.from(key) : key;
  return ((crc32(bytes) >>> 16) & 0x7fff) % vbuckets;
}
