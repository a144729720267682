import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
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
  const secret = randomBytes(32);
  // PLAIN compares digests of equal length, the same work for unknown users and for any password length
  const digest = (text: string) => createHmac('sha256', secret).update(text).digest();
  return {
    mode: 'users',
    anonymousKv,
    fakeSaltSecret: secret,
    credential: (user) => credentials.get(user),
    checkPassword(user, password) {
      const expected = users.get(user);
      const same = timingSafeEqual(digest(expected ?? ''), digest(password));
      return same && expected !== undefined;
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
