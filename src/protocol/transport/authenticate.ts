import { AuthError, SCRAM_MECHANISM, ScramClient } from '../auth/scram.js';
import { Opcode, Status } from '../constants.js';
import { decodeSaslAuthResponse, encodeSaslAuth } from '../messages/index.js';
import type { FrameConnection } from './frame-connection.js';

/**
 * SASL SCRAM-SHA-256 on a fresh connection. A server naming more than SCRAM_MAX_ITERATIONS rounds is
 * refused with ScramIterationsError (not retriable) before any key derivation.
 */
export async function authenticate(
  conn: FrameConnection,
  user: string,
  password: string,
  timeoutMs = 10_000,
): Promise<void> {
  const client = new ScramClient(user, password);
  const step = async (opcode: typeof Opcode.SASL_AUTH | typeof Opcode.SASL_STEP, data: string) => {
    const opaque = conn.allocateOpaque();
    const response = await conn.request(
      encodeSaslAuth({ opcode, opaque, mechanism: SCRAM_MECHANISM, data: Buffer.from(data) }),
      { opaque, opcode, timeoutMs },
    );
    return decodeSaslAuthResponse(response);
  };
  const first = await step(Opcode.SASL_AUTH, client.first());
  if (first.status !== Status.AuthContinue)
    throw new AuthError(`authentication as "${user}" refused by ${conn.peer}`);
  const final = await step(Opcode.SASL_STEP, await client.final(first.data.toString('utf8')));
  if (final.status !== Status.Success)
    throw new AuthError(`authentication as "${user}" failed at ${conn.peer}`);
  client.verify(final.data.toString('utf8'));
}
