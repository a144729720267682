// Replica streams that did not come back (refused by the producer, e.g. ERANGE, or no answer): each is
// tried again with doubling backoff (jitter unless turned off) while it is wanted, and counted on
// /metrics as `dcpx_proxy_streams{state="retrying"}` until it is open again or no longer wanted
// (issue 9 C: never left silently behind). Not a wait anyone blocks on: it ends with `stop`/`stopAll`.

export interface StreamRetryPolicy {
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

interface Entry {
  timer: NodeJS.Timeout | undefined;
  failures: number;
}

export class StreamRetries {
  private readonly entries = new Map<number, Entry>();

  constructor(
    private readonly policy: StreamRetryPolicy,
    private readonly randomize: boolean,
    /** Called with +1 / -1 as vBuckets enter and leave the retrying state. */
    private readonly count: (delta: number) => void,
    /** Tries `vb` again (the n-th retry); schedules the next itself if that fails. */
    private readonly retry: (vb: number, n: number) => void,
  ) {}

  /** The vBuckets being retried. */
  get vbuckets(): number[] {
    return [...this.entries.keys()].sort((a, b) => a - b);
  }

  has(vb: number): boolean {
    return this.entries.has(vb);
  }

  /** Schedules the next try of `vb` (once: a try already scheduled stays). */
  schedule(vb: number): void {
    let entry = this.entries.get(vb);
    if (!entry) {
      entry = { timer: undefined, failures: 0 };
      this.entries.set(vb, entry);
      this.count(1);
    }
    if (entry.timer) return;
    const min = this.policy.minBackoffMs ?? 500;
    const max = this.policy.maxBackoffMs ?? 30_000;
    const jitter = this.randomize ? 1 + Math.random() : 1;
    const delay = Math.min(max, min * 2 ** entry.failures * jitter);
    entry.failures++;
    const scheduled = entry;
    entry.timer = setTimeout(() => {
      scheduled.timer = undefined;
      if (this.entries.get(vb) === scheduled) this.retry(vb, scheduled.failures);
    }, delay);
  }

  /** `vb` is open again, or no longer wanted. */
  stop(vb: number): void {
    const entry = this.entries.get(vb);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.entries.delete(vb);
    this.count(-1);
  }

  stopAll(): void {
    for (const vb of [...this.entries.keys()]) this.stop(vb);
  }
}
