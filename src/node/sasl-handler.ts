import {
  AuthError,
  decodeSaslAuth,
  encodeSaslAuthResponse,
  encodeSaslListMechsResponse,
  type Frame,
  type Logger,
  Opcode,
  PLAIN_MECHANISM,
  parsePlain,
  SCRAM_MECHANISMS,
  ScramServer,
  Status,
} from '../protocol/index.js';
import type { NodeAuth } from './auth.js';
import type { Replies } from './replies.js';
import type { Session } from './session.js';

export const SASL_OPCODES: ReadonlySet<number> = new Set<number>([
  Opcode.SASL_LIST_MECHS,
  Opcode.SASL_AUTH,
  Opcode.SASL_STEP,
]);

/**
 * SASL_AUTH exchanges one connection may start. A client needs one (a few when it tries mechanisms in
 * turn); past this the connection is closed, so a pipelined flood of attempts costs the node a handful
 * of fake-credential derivations and log lines, not thousands.
 */
export const MAX_SASL_ATTEMPTS = 16;

/** memcached's list over plain TCP: the SCRAM mechanisms, strongest first (kv_engine cbsasl). */
const SCRAM_LIST = [...SCRAM_MECHANISMS.keys()];

/**
 * SASL on one connection: SCRAM-SHA512, SCRAM-SHA256 and SCRAM-SHA1 everywhere, PLAIN only over TLS
 * (DESIGN.md "Security"), listed in memcached's order.
 */
export class SaslHandler {
  private scram: ScramServer | undefined;
  private scramMechanism = '';
  private attempts = 0;

  constructor(
    private readonly auth: NodeAuth,
    private readonly session: Session,
    private readonly replies: Replies,
    private readonly log: Logger,
    /** Called once the connection has authenticated. */
    private readonly onAuthenticated: (user: string) => void,
    /** The client started more than MAX_SASL_ATTEMPTS exchanges: the connection must go. */
    private readonly onTooManyAttempts: (attempts: number) => void,
  ) {}

  /** One of SASL_OPCODES. */
  handle(frame: Frame): void {
    if (frame.opcode === Opcode.SASL_LIST_MECHS) {
      const mechanisms = this.session.secure ? [...SCRAM_LIST, PLAIN_MECHANISM] : SCRAM_LIST;
      return this.replies.respond(
        frame,
        encodeSaslListMechsResponse({ opaque: frame.opaque, status: Status.Success, mechanisms }),
      );
    }
    const request = decodeSaslAuth(frame);
    if (frame.opcode === Opcode.SASL_AUTH && ++this.attempts > MAX_SASL_ATTEMPTS) {
      return this.onTooManyAttempts(this.attempts);
    }
    const answer = (status: number, data: Buffer | string) =>
      this.replies.respond(
        frame,
        encodeSaslAuthResponse({
          opcode: request.opcode,
          opaque: frame.opaque,
          status,
          data: Buffer.from(data),
        }),
      );
    try {
      if (request.mechanism === PLAIN_MECHANISM) {
        if (!this.session.secure) return answer(Status.AuthError, 'PLAIN is allowed only over TLS');
        const { user, password } = parsePlain(request.data);
        if (!this.auth.checkPassword(user, password))
          throw new AuthError(`PLAIN: authentication failed for "${user}"`);
        this.authenticated(user);
        return answer(Status.Success, 'Authenticated');
      }
      const hash = SCRAM_MECHANISMS.get(request.mechanism);
      if (hash === undefined) return answer(Status.AuthError, `unsupported mechanism ${request.mechanism}`);
      if (frame.opcode === Opcode.SASL_AUTH) {
        this.scram = new ScramServer((user) => this.auth.credential(user, hash), {
          fakeSaltSecret: this.auth.fakeSaltSecret,
          hash,
        });
        this.scramMechanism = request.mechanism;
        return answer(Status.AuthContinue, this.scram.start(request.data.toString('utf8')));
      }
      if (!this.scram || this.scramMechanism !== request.mechanism)
        return answer(Status.AuthError, 'SASL_STEP without a SASL_AUTH of its mechanism');
      const final = this.scram.finish(request.data.toString('utf8'));
      const user = this.scram.user;
      this.scram = undefined;
      this.authenticated(user);
      return answer(Status.Success, final);
    } catch (error) {
      this.scram = undefined;
      const message = error instanceof Error ? error.message : String(error);
      this.log.warn({ err: message }, 'authentication failed');
      return answer(Status.AuthError, 'Auth failure');
    }
  }

  private authenticated(user: string): void {
    this.session.user = user;
    this.log.info({ user }, 'authenticated');
    this.onAuthenticated(user);
  }
}
