import { createHash, createHmac, pbkdf2, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { DcpxError } from '../errors.js';

const pbkdf2Async = promisify(pbkdf2);

// SASL SCRAM-SHA-256 (RFC 5802 / RFC 7677) as memcached speaks it: SASL_AUTH carries the client-first
// message and gets AuthContinue with the server-first; SASL_STEP carries the client-final and gets
// Success with the server-final. Couchbase names the mechanism "SCRAM-SHA256".

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

const hmac = (key: Buffer, data: string | Buffer) => createHmac('sha256', key).update(data).digest();
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest();
const xor = (a: Buffer, b: Buffer) => Buffer.from(a.map((byte, i) => byte ^ b[i]!));

/** What a server keeps per user: never the password itself. */
export interface ScramCredential {
  salt: Buffer;
  iterations: number;
  storedKey: Buffer;
  serverKey: Buffer;
}

/** Derives a user's credential (once, when the user table is built; never per authentication). */
export function makeScramCredential(
  password: string,
  salt = randomBytes(16),
  iterations = SCRAM_ITERATIONS,
): ScramCredential {
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  const clientKey = hmac(salted, 'Client Key');
  return { salt, iterations, storedKey: sha256(clientKey), serverKey: hmac(salted, 'Server Key') };
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
): ScramCredential {
  const mac = (label: string) =>
    createHmac('sha256', secret).update(label).update('\0').update(user).digest();
  return {
    salt: mac('salt').subarray(0, 16),
    iterations,
    storedKey: mac('stored-key'),
    serverKey: mac('server-key'),
  };
}

/** The secret of fake salts when a server is given none (one per process). */
const processSecret = randomBytes(32);

export interface ScramServerOptions {
  /** The secret unknown users' fake salts are derived from (a node keeps one for its lifetime). */
  fakeSaltSecret?: Buffer;
  /** The iteration count shown to unknown users: the one real users have. */
  iterations?: number;
}

/** One server-side SCRAM exchange. */
export class ScramServer {
  private clientFirstBare = '';
  private serverFirst = '';
  private nonce = '';
  private credential: ScramCredential | undefined;
  private known = false;
  user = '';

  constructor(
    private readonly lookup: (user: string) => ScramCredential | undefined,
    private readonly options: ScramServerOptions = {},
  ) {}

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
      );
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
    const clientSignature = hmac(this.credential.storedKey, authMessage);
    if (proof.length !== clientSignature.length) throw new AuthError('SCRAM: bad proof');
    const clientKey = xor(proof, clientSignature);
    const ok = timingSafeEqual(sha256(clientKey), this.credential.storedKey) && this.known;
    if (!ok) throw new AuthError(`SCRAM: authentication failed for "${this.user}"`);
    return `v=${hmac(this.credential.serverKey, authMessage).toString('base64')}`;
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
      32,
      'sha256',
    );
    const clientKey = hmac(salted, 'Client Key');
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const proof = xor(clientKey, hmac(sha256(clientKey), authMessage));
    this.expectedServerSignature = hmac(hmac(salted, 'Server Key'), authMessage);
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
