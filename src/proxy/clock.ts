/** Where the replicator reads time (injected in tests so deadlines do not race the wall clock). */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
