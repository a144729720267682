import { randomBytes, timingSafeEqual } from 'node:crypto';
import { makeScramCredential, type ScramCredential } from '../protocol/index.js';

/** Who may do what on a node (DESIGN.md "Security"). */
export interface NodeAuth {
  /** 'users': SASL required; 'none': everything allowed without auth (tests, conformance). */
  mode: 'users' | 'none';
  /** KV commands without auth (behind an explicit flag; the memcached conformance run uses it). */
  anonymousKv: boolean;
  credential(user: string): ScramCredential | undefined;
  checkPassword(user: string, password: string): boolean;
  /** The secret unknown users' stable fake salts come from (one per node, for its lifetime). */
  readonly fakeSaltSecret?: Buffer;
}

/**
 * A user table built from plain passwords at start-up: each SCRAM credential is derived once, here;
 * authentication itself derives nothing.
 */
export function userAuth(users: ReadonlyMap<string, string>, anonymousKv = false): NodeAuth {
  const credentials = new Map<string, ScramCredential>();
  for (const [user, password] of users) credentials.set(user, makeScramCredential(password));
  return {
    mode: 'users',
    anonymousKv,
    fakeSaltSecret: randomBytes(32),
    credential: (user) => credentials.get(user),
    checkPassword(user, password) {
      const expected = users.get(user);
      if (expected === undefined) return false;
      const a = Buffer.from(expected);
      const b = Buffer.from(password);
      return a.length === b.length && timingSafeEqual(a, b);
    },
  };
}

/** What a StorageNode without an auth option uses: nobody can authenticate, only SASL and HELLO pass. */
export const denyAll: NodeAuth = {
  mode: 'users',
  anonymousKv: false,
  credential: () => undefined,
  checkPassword: () => false,
};

/** Everything allowed without authentication: the embedder says so explicitly (tests, conformance). */
export const noAuth: NodeAuth = {
  mode: 'none',
  anonymousKv: true,
  credential: () => undefined,
  checkPassword: () => false,
};
