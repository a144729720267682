import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { makeScramCredential, type ScramCredential, type ScramHash } from '../protocol/index.js';

/** Who may do what on a node (DESIGN.md "Security"). */
export interface NodeAuth {
  /** 'users': SASL required; 'none': everything allowed without auth (tests, conformance). */
  mode: 'users' | 'none';
  /** KV commands without auth (behind an explicit flag; the memcached conformance run uses it). */
  anonymousKv: boolean;
  /** The user's SCRAM credential for one mechanism's hash (sha256 when not said). */
  credential(user: string, hash?: ScramHash): ScramCredential | undefined;
  checkPassword(user: string, password: string): boolean;
  /** The secret unknown users' stable fake salts come from (one per node, for its lifetime). */
  readonly fakeSaltSecret?: Buffer;
}

/**
 * A user table built from plain passwords at start-up: each SCRAM credential is derived once, here;
 * authentication itself derives nothing.
 */
export function userAuth(users: ReadonlyMap<string, string>, anonymousKv = false): NodeAuth {
  // one credential per SCRAM mechanism (memcached keeps one per hash too), all from one salt
  const credentials = new Map<string, ScramCredential>();
  const hashes: ScramHash[] = ['sha512', 'sha256', 'sha1'];
  for (const [user, password] of users) {
    const salt = randomBytes(16);
    for (const hash of hashes)
      credentials.set(`${hash}\0${user}`, makeScramCredential(password, salt, undefined, hash));
  }
  const secret = randomBytes(32);
  // PLAIN compares digests of equal length, the same work for unknown users and for any password length
  const digest = (text: string) => createHmac('sha256', secret).update(text).digest();
  return {
    mode: 'users',
    anonymousKv,
    fakeSaltSecret: secret,
    credential: (user, hash = 'sha256') => credentials.get(`${hash}\0${user}`),
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
