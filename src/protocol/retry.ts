/** How a dropped connection is re-made: attempts and jittered exponential backoff (DESIGN.md invariant 5). */
export interface ReconnectPolicy {
  retries?: number;
  minTimeoutMs?: number;
  maxTimeoutMs?: number;
}

/** p-retry options for a reconnect loop: bounded attempts, doubling backoff with jitter. */
export function reconnectOptions(policy: ReconnectPolicy = {}): {
  retries: number;
  minTimeout: number;
  maxTimeout: number;
  factor: number;
  randomize: boolean;
} {
  return {
    retries: policy.retries ?? 10,
    minTimeout: policy.minTimeoutMs ?? 100,
    maxTimeout: policy.maxTimeoutMs ?? 5_000,
    factor: 2,
    randomize: true,
  };
}
