// Which stream of each vBucket is live on a replicator's connection pair (invariant 3). The consumer's
// stream opaques come from a per-connection counter and are never reused, so one live opaque per
// vBucket is all there is to remember: a stream frame whose opaque is not its vBucket's live one
// belongs to a dead stream. Nothing here grows with the number of streams ever opened.

/** The outcome of waiting for the producer's STREAM_END(Closed) of a closed stream. Never rejects. */
export type EndOutcome = 'ended' | 'timeout' | 'aborted';

export interface EndWait {
  /** Waits (bounded) for the STREAM_END, which may also have come already. */
  wait(timeoutMs: number, signal: AbortSignal): Promise<EndOutcome>;
  cancel(): void;
}

interface Expected {
  opaque: number;
  seen: boolean;
  notify?: () => void;
}

export class StreamTracks {
  /** vBucket → live stream opaque (from the consumer's latest STREAM_REQ). */
  private readonly live = new Map<number, number>();
  /** Live stream opaque → vBucket (replies carry no vBucket). */
  private readonly byOpaque = new Map<number, number>();
  /** vBucket → the STREAM_END(Closed) expected of its just-closed stream. */
  private readonly ends = new Map<number, Expected>();

  /** The consumer asked for a stream (every STREAM_REQ, rollback re-requests included: DESIGN.md). */
  requested(vbucket: number, opaque: number): void {
    const old = this.live.get(vbucket);
    if (old !== undefined) this.byOpaque.delete(old);
    this.live.set(vbucket, opaque);
    this.byOpaque.set(opaque, vbucket);
  }

  isLive(vbucket: number, opaque: number): boolean {
    return this.live.get(vbucket) === opaque;
  }

  /** The vBucket whose live stream has `opaque`. */
  vbucketOf(opaque: number): number | undefined {
    return this.byOpaque.get(opaque);
  }

  /** Ends `vbucket`'s live stream: from now on its frames are stale. Returns its opaque. */
  retire(vbucket: number): number | undefined {
    const opaque = this.live.get(vbucket);
    if (opaque === undefined) return undefined;
    this.live.delete(vbucket);
    this.byOpaque.delete(opaque);
    return opaque;
  }

  /** Starts expecting the producer's STREAM_END of the retired stream `opaque` (before the close is sent). */
  expectEnd(vbucket: number, opaque: number): EndWait {
    const expected: Expected = { opaque, seen: false };
    this.ends.get(vbucket)?.notify?.();
    this.ends.set(vbucket, expected);
    const forget = () => {
      if (this.ends.get(vbucket) === expected) this.ends.delete(vbucket);
    };
    return {
      wait: (timeoutMs, signal) => {
        if (expected.seen) {
          forget();
          return Promise.resolve('ended');
        }
        if (signal.aborted) {
          forget();
          return Promise.resolve('aborted');
        }
        return new Promise<EndOutcome>((resolve) => {
          const done = (outcome: EndOutcome) => {
            clearTimeout(timer);
            signal.removeEventListener('abort', onAbort);
            expected.notify = undefined;
            forget();
            resolve(outcome);
          };
          const onAbort = () => done('aborted');
          const timer = setTimeout(() => done('timeout'), timeoutMs);
          signal.addEventListener('abort', onAbort, { once: true });
          expected.notify = () => done(expected.seen ? 'ended' : 'aborted');
        });
      },
      cancel: () => {
        expected.notify?.();
        forget();
      },
    };
  }

  /** A STREAM_END of a stream that is not live arrived: settles the wait for it, if any. */
  staleEnd(vbucket: number, opaque: number): void {
    const expected = this.ends.get(vbucket);
    if (expected?.opaque !== opaque) return;
    expected.seen = true;
    expected.notify?.();
  }

  /** Forgets everything (the connections went: their opaques mean nothing on new ones). */
  clear(): void {
    for (const expected of this.ends.values()) expected.notify?.();
    this.ends.clear();
    this.live.clear();
    this.byOpaque.clear();
  }

  /** Entries held (for footprint checks). */
  get size(): number {
    return this.live.size + this.ends.size;
  }
}
