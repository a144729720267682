import couchbase, { type Collection } from 'couchbase';

/** The Couchbase SDK's user and password in the SDK tests. */
export const USER = 'Administrator';
export const PASSWORD = 'password';

/** Connects as an application would: `couchbase://127.0.0.1:PORT`, user and password, nothing else. */
export async function connectSdk(
  ports: number | readonly number[],
  options = '',
): Promise<couchbase.Cluster> {
  const hosts = (typeof ports === 'number' ? [ports] : ports).map((port) => `127.0.0.1:${port}`).join(',');
  return couchbase.connect(`couchbase://${hosts}${options}`, { username: USER, password: PASSWORD });
}

/** Runs `fn` over `items` with at most `inFlight` calls pending (the SDK pipelines them). */
export async function inFlight<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** The error class name an SDK call fails with, or 'ok'. */
export async function outcome(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return 'ok';
  } catch (error) {
    return error instanceof Error ? error.constructor.name : String(error);
  }
}

export type Doc = Record<string, number> | string | Buffer;

/** What `get` gives back for a stored value (JSON objects, strings and Buffers keep their type by flags). */
export function normal(value: unknown): unknown {
  return Buffer.isBuffer(value) ? `buffer:${value.toString('latin1')}` : value;
}

export function docValue(i: number, version: number): Doc {
  switch (i % 3) {
    case 0:
      return { i, version };
    case 1:
      return `s${i}.${version}`;
    default:
      return Buffer.from(`b${i}.${version}`);
  }
}

/** Counts of what each kind of operation did. */
export type Tally = Record<string, number>;

export function count(tally: Tally, what: string): void {
  tally[what] = (tally[what] ?? 0) + 1;
}

export type { Collection };

/** The error class name of a failed SDK call. */
export function errorName(error: unknown): string {
  return error instanceof Error ? error.constructor.name : String(error);
}

/**
 * The SDK's documented errors for an operation it could not finish while a node failed
 * (couchbase 4.7.1 `dist/errors.d.ts`): a timeout, ambiguous or not, once its retries (NOT_MY_VBUCKET,
 * a node not reachable) ran out of time; and RequestCanceledError for a write in flight on a connection
 * that closed (a node killed), which the SDK does not retry since it may have been applied (retry
 * reason socket_closed_while_in_flight: `deps/couchbase-cxx-client/core/io/mcbp_command.hxx`, and
 * `core/impl/retry_reason.cxx` allows_non_idempotent_retry).
 */
export const RETRY_TIMEOUT_ERRORS: readonly string[] = [
  'UnambiguousTimeoutError',
  'AmbiguousTimeoutError',
  'TimeoutError',
  'RequestCanceledError',
];
