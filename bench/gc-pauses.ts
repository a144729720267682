import { constants, type PerformanceEntry, PerformanceObserver } from 'node:perf_hooks';
import type { Readable } from 'node:stream';

// GC pauses with perf_hooks, in the bench process and in the processes it starts: a child started with
// `--import <this module's gc-report.js>` writes one `dcpx-gc {...}` line per pause on stderr, read
// back here with `fromChild`. Times are wall-clock ms (timeOrigin + startTime) so that pauses of
// different processes line up with the bench's own timestamps.

export interface GcPause {
  /** Wall-clock start, ms since the epoch. */
  at: number;
  ms: number;
  kind: 'minor' | 'major' | 'incremental' | 'weakcb' | 'other';
}

const KINDS: Record<number, GcPause['kind']> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

export const GC_LINE = 'dcpx-gc ';

/** Calls `onPause` for every GC pause of this process until the returned function is called. */
export function observeGc(onPause: (pause: GcPause) => void): () => void {
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as PerformanceEntry & { detail?: { kind?: number } | null }).detail?.kind;
      onPause({
        at: performance.timeOrigin + e.startTime,
        ms: e.duration,
        kind: (kind !== undefined && KINDS[kind]) || 'other',
      });
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  return () => observer.disconnect();
}

/** Collects the `dcpx-gc` lines a child writes on `stderr`. */
export function fromChild(stderr: Readable, into: GcPause[]): void {
  let buffered = '';
  stderr.on('data', (d: Buffer) => {
    buffered += d.toString();
    for (let i = buffered.indexOf('\n'); i >= 0; i = buffered.indexOf('\n')) {
      const line = buffered.slice(0, i);
      buffered = buffered.slice(i + 1);
      if (line.startsWith(GC_LINE)) into.push(JSON.parse(line.slice(GC_LINE.length)) as GcPause);
    }
  });
}

/** count, total, p99 and max of `pauses`, and the pause time inside the given [from, to] windows. */
export function summarize(pauses: readonly GcPause[], windows: readonly [number, number][] = []) {
  const sorted = pauses.map((p) => p.ms).sort((a, b) => a - b);
  let inWindows = 0;
  for (const p of pauses) {
    for (const [from, to] of windows) {
      const overlap = Math.min(p.at + p.ms, to) - Math.max(p.at, from);
      if (overlap > 0) inWindows += overlap;
    }
  }
  return {
    count: sorted.length,
    totalMs: sorted.reduce((s, x) => s + x, 0),
    p99Ms: sorted[Math.min(sorted.length - 1, Math.floor(0.99 * sorted.length))] ?? 0,
    maxMs: sorted[sorted.length - 1] ?? 0,
    inWindowsMs: inWindows,
  };
}
