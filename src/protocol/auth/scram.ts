import { createHash, createHmac, pbkdf2, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { DcpxError } from '../errors.js';

const pbkdf2Async = promisify(pbkdf2);

// SASL SCRAM (RFC 5802 / RFC 7677) as memcached speaks it: SASL_AUTH carries the client-first
// message and gets AuthContinue with the server-first; SASL_STEP carries the client-final and gets
// Success with the server-final. Couchbase names the mechanisms "SCRAM-SHA512", "SCRAM-SHA256" and
// "SCRAM-SHA1" (kv_engine cbsasl), and lists them in that order, strongest first.

/** The hash functions of the SCRAM mechanisms memcached offers. */
export type ScramHash = 'sha512' | 'sha256' | 'sha1';

/** Mechanism name → hash, in memcached's order (the order SASL_LIST_MECHS answers with). */
export const SCRAM_MECHANISMS: ReadonlyMap<string, ScramHash> = new Map<string, ScramHash>([
  ['SCRAM-SHA512', 'sha512'],
  ['SCRAM-SHA256', 'sha256'],
  ['SCRAM-SHA1', 'sha1'],
]);

/** The mechanism dcpx's own clients use. */
export const SCRAM_MECHANISM = 'SCRAM-SHA256';
export const PLAIN_MECHANISM = 'PLAIN';
/** memcached's default iteration count, and what dcpx nodes use. */
export const SCRAM_ITERATIONS = 4096;
/** The most iterations a client derives a key for: a server asking for more is refused. */
export const SCRAM_MAX_ITERATIONS = 100_000;

/** Authentication failed or was refused; a retry cannot fix it (isRetriable is false). */
export class AuthError extends DcpxError {
  readonly retriable = false;
  constructor(message: string, code = 'DCPX_ERR_AUTH') {
    super(code, message);
  }
}

/** The server named more PBKDF2 iterations than the client allows (DESIGN.md "Security"). */
export class ScramIterationsError extends AuthError {
  readonly iterations: number;
  readonly max: number;
  constructor(iterations: number, max: number) {
    super(
      `SCRAM: the server's iteration count ${iterations} is over the maximum of ${max}; refusing to derive a key`,
      'DCPX_ERR_SCRAM_ITERATIONS',
    );
    this.iterations = iterations;
    this.max = max;
  }
}

/** Output bytes of each hash (PBKDF2's dkLen is the hash length, RFC 5802 §2.2 Hi()). */
const HASH_BYTES: Readonly<Record<ScramHash, number>> = { sha512: 64, sha256: 32, sha1: 20 };

const hmac = (hash: ScramHash, key: Buffer, data: string | Buffer) =>
  createHmac(hash, key).update(data).digest();
const digest = (hash: ScramHash, data: Buffer) => createHash(hash).update(data).digest();
const xor = (a: Buffer, b: Buffer) => Buffer.from(a.map((byte, i) => byte ^ b[i]!));

/** What a server keeps per user: never the password itself. */
export interface ScramCredential {
  salt: Buffer;
  iterations: number;
  storedKey: Buffer;
  serverKey: Buffer;
  /** The hash this credential was derived with (default sha256). */
  hash?: ScramHash;
}

/** Derives a user's credential (once, when the user table is built; never per authentication). */
export function makeScramCredential(
  password: string,
  salt = randomBytes(16),
  iterations = SCRAM_ITERATIONS,
  hash: ScramHash = 'sha256',
): ScramCredential {
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, iterations, HASH_BYTES[hash], hash);
  const clientKey = hmac(hash, salted, 'Client Key');
  return {
    salt,
    iterations,
    storedKey: digest(hash, clientKey),
    serverKey: hmac(hash, salted, 'Server Key'),
    hash,
  };
}

/** RFC 5802 saslname escaping of user names. */
function escapeName(name: string): string {
  return name.replace(/=/g, '=3D').replace(/,/g, '=2C');
}
function unescapeName(name: string): string {
  return name.replace(/=2C/g, ',').replace(/=3D/g, '=');
}

function attributes(message: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const part of message.split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) map.set(part.slice(0, eq), part.slice(eq + 1));
  }
  return map;
}

/**
 * What an unknown user is shown instead of a credential (RFC 5802 §5.1 "the server SHOULD ... a
 * stable fake salt"): the salt is an HMAC of the name under a secret, so it never changes between
 * attempts and looks like a real one, and nothing is derived. The keys are made up the same way; no
 * proof can match them, and the exchange fails at the proof, as a wrong password does.
 */
export function fakeScramCredential(
  secret: Buffer,
  user: string,
  iterations = SCRAM_ITERATIONS,
  hash: ScramHash = 'sha256',
): ScramCredential {
  // keys as long as the hash's, so the proof check runs the same way as for a known user
  const mac = (label: string) => createHmac(hash, secret).update(label).update('\0').update(user).digest();
  return {
    salt: createHmac('sha256', secret).update('salt').update('\0').update(user).digest().subarray(0, 16),
    iterations,
    storedKey: mac('stored-key'),
    serverKey: mac('server-key'),
    hash,
  };
}

/** The secret of fake salts when a server is given none (one per process). */
const processSecret = randomBytes(32);

export interface ScramServerOptions {
  /** The secret unknown users' fake salts are derived from (a node keeps one for its lifetime). */
  fakeSaltSecret?: Buffer;
  /** The iteration count shown to unknown users: the one real users have. */
  iterations?: number;
  /** The mechanism's hash (default sha256); the lookup must return credentials of this hash. */
  hash?: ScramHash;
}

/** One server-side SCRAM exchange. */
export class ScramServer {
  private clientFirstBare = '';
  private serverFirst = '';
  private nonce = '';
  private credential: ScramCredential | undefined;
  private known = false;
  user = '';
  private readonly hash: ScramHash;

  constructor(
    private readonly lookup: (user: string) => ScramCredential | undefined,
    private readonly options: ScramServerOptions = {},
  ) {
    this.hash = options.hash ?? 'sha256';
  }

  /** Handles the client-first message; returns the server-first message. */
  start(clientFirst: string): string {
    if (!clientFirst.startsWith('n,') && !clientFirst.startsWith('y,')) {
      throw new AuthError('SCRAM: channel binding is not supported');
    }
    const bareStart = clientFirst.indexOf(',', 2);
    this.clientFirstBare = clientFirst.slice(bareStart + 1);
    const attrs = attributes(this.clientFirstBare);
    const user = attrs.get('n');
    const clientNonce = attrs.get('r');
    if (!user || !clientNonce) throw new AuthError('SCRAM: client-first message lacks n= or r=');
    this.user = unescapeName(user);
    // an unknown user gets a stable made-up credential so the exchange looks the same; it fails at the proof
    const real = this.lookup(this.user);
    this.known = real !== undefined;
    this.credential =
      real ??
      fakeScramCredential(
        this.options.fakeSaltSecret ?? processSecret,
        this.user,
        this.options.iterations ?? SCRAM_ITERATIONS,
        this.hash,
      );
    if ((this.credential.hash ?? 'sha256') !== this.hash) {
      throw new AuthError(`SCRAM: the credential of "${this.user}" is not ${this.hash}`);
    }
    this.nonce = clientNonce + randomBytes(18).toString('base64');
    this.serverFirst = `r=${this.nonce},s=${this.credential.salt.toString('base64')},i=${this.credential.iterations}`;
    return this.serverFirst;
  }

  /** Checks the client-final message; returns the server-final message, or throws AuthError. */
  finish(clientFinal: string): string {
    if (!this.credential) throw new AuthError('SCRAM: step before start');
    const proofAt = clientFinal.lastIndexOf(',p=');
    if (proofAt < 0) throw new AuthError('SCRAM: client-final message lacks p=');
    const withoutProof = clientFinal.slice(0, proofAt);
    const attrs = attributes(withoutProof);
    if (attrs.get('r') !== this.nonce) throw new AuthError('SCRAM: nonce mismatch');
    const proof = Buffer.from(clientFinal.slice(proofAt + 3), 'base64');
    const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`;
    const h = this.hash;
    const clientSignature = hmac(h, this.credential.storedKey, authMessage);
    if (proof.length !== clientSignature.length) throw new AuthError('SCRAM: bad proof');
    const clientKey = xor(proof, clientSignature);
    const ok = timingSafeEqual(digest(h, clientKey), this.credential.storedKey) && this.known;
    if (!ok) throw new AuthError(`SCRAM: authentication failed for "${this.user}"`);
    return `v=${hmac(h, this.credential.serverKey, authMessage).toString('base64')}`;
  }
}

/** One client-side SCRAM exchange. */
export class ScramClient {
  private readonly clientNonce = randomBytes(18).toString('base64');
  private clientFirstBare = '';
  private expectedServerSignature: Buffer | undefined;

  constructor(
    private readonly user: string,
    private readonly password: string,
    private readonly maxIterations = SCRAM_MAX_ITERATIONS,
    private readonly hash: ScramHash = 'sha256',
  ) {}

  first(): string {
    this.clientFirstBare = `n=${escapeName(this.user)},r=${this.clientNonce}`;
    return `n,,${this.clientFirstBare}`;
  }

  /**
   * Answers the server-first message with the client-final message. The key is derived off the event
   * loop, and never for more than `maxIterations` rounds (a hostile server could name billions).
   */
  async final(serverFirst: string): Promise<string> {
    const attrs = attributes(serverFirst);
    const nonce = attrs.get('r');
    const salt = attrs.get('s');
    const iterations = Number(attrs.get('i'));
    if (!nonce?.startsWith(this.clientNonce) || !salt || !Number.isInteger(iterations) || iterations < 1) {
      throw new AuthError('SCRAM: bad server-first message');
    }
    if (iterations > this.maxIterations) throw new ScramIterationsError(iterations, this.maxIterations);
    const salted = await pbkdf2Async(
      this.password.normalize('NFKC'),
      Buffer.from(salt, 'base64'),
      iterations,
      HASH_BYTES[this.hash],
      this.hash,
    );
    const h = this.hash;
    const clientKey = hmac(h, salted, 'Client Key');
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const proof = xor(clientKey, hmac(h, digest(h, clientKey), authMessage));
    this.expectedServerSignature = hmac(h, hmac(h, salted, 'Server Key'), authMessage);
    return `${withoutProof},p=${proof.toString('base64')}`;
  }

  /** Verifies the server-final message (the server proves it knows the credential too). */
  verify(serverFinal: string): void {
    const v = Buffer.from(attributes(serverFinal).get('v') ?? '', 'base64');
    const expected = this.expectedServerSignature;
    if (!expected || v.length !== expected.length || !timingSafeEqual(v, expected)) {
      throw new AuthError('SCRAM: server signature does not verify');
    }
  }
}

/** PLAIN's message: authzid NUL user NUL password (only over TLS). */
export function plainMessage(user: string, password: string): Buffer {
  return Buffer.from(`\0${user}\0${password}`);
}
export function parsePlain(message: Buffer): { user: string; password: string } {
  const parts = message.toString('utf8').split('\0');
  if (parts.length !== 3) throw new AuthError('PLAIN: malformed message');
  return { user: parts[1]!, password: parts[2]! };
}
