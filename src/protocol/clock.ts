// Time for every timer-driven decision (liveness, takeover deadlines), injected so tests step it exactly.

/** Where time comes from: the system's timers by default, a stepped clock in tests. */
export interface Clock {
  /** Milliseconds on a monotonic scale (only differences are used: round-trip times). */
  now(): number;
  /** Calls `tick` every `ms` until the returned function is called. */
  every(ms: number, tick: () => void): () => void;
}

/** The process's clock; timers are unref'd so liveness never keeps a process alive. */
export const systemClock: Clock = {
  now: () => performance.now(),
  every(ms, tick) {
    // the global is looked up at call time, so test fake timers apply too
    const timer = setInterval(tick, ms);
    timer.unref?.();
    return () => clearInterval(timer);
  },
};

/** What needs only readings of time (deadlines, durations). */
export type ReadClock = Pick<Clock, 'now'>;
