import {
  decodeGetVBucketResponse,
  encodeDcpOpen,
  encodeGetVBucket,
  encodeSetVBucket,
  epochValue,
  Opcode,
  StaleEpochError,
  Status,
  StatusError,
  type VBucketState,
} from '../protocol/index.js';
import {
  authenticate,
  connectTcp,
  type FrameConnection,
  type NodeAddress,
  parseAddress,
} from '../protocol/transport/index.js';

export { authenticate, type NodeAddress, parseAddress };

// Opening the connections a replicator (or any client of a node) needs: TCP, SASL SCRAM-SHA-256 when
// credentials are given, then DCP_OPEN for the DCP halves (dcp-spec §10.1 connect sequence).

export interface SessionOptions {
  user?: string;
  password?: string;
  timeoutMs?: number;
  /** Ends the setup at once (connect, SASL, DCP_OPEN), rejecting with the signal's reason. */
  signal?: AbortSignal;
  /**
   * The cluster manager's epoch, put in DCP_OPEN's JSON value: a managed node refuses a consumer open
   * (and takeover streams) without a current one (DESIGN.md "Cluster operations").
   */
  epoch?: number;
}

/**
 * Runs `setup` on a fresh connection; the connection is destroyed and the setup rejects with the
 * signal's reason as soon as `signal` aborts, whichever step (TCP connect, SASL, DCP_OPEN) is waiting.
 */
async function guarded(
  address: NodeAddress,
  options: SessionOptions,
  setup: (conn: FrameConnection) => Promise<void>,
): Promise<FrameConnection> {
  const { signal } = options;
  signal?.throwIfAborted();
  const connecting = connectTcp({
    host: address.host,
    port: address.port,
    timeoutMs: options.timeoutMs ?? 10_000,
  });
  let conn: FrameConnection | undefined;
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => {
      conn?.destroy();
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
  aborted.catch(() => undefined);
  try {
    conn = await Promise.race([connecting, aborted]);
    await Promise.race([setup(conn), aborted]);
    return conn;
  } catch (error) {
    if (conn) conn.destroy();
    // a connection that arrives after the abort is closed unused
    else
      void connecting.then(
        (late) => late.destroy(),
        () => undefined,
      );
    throw signal?.aborted ? signal.reason : error;
  } finally {
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
}

async function auth(conn: FrameConnection, options: SessionOptions): Promise<void> {
  if (options.user !== undefined)
    await authenticate(conn, options.user, options.password ?? '', options.timeoutMs);
}

/** A connection that has done DCP_OPEN with `flags` under `name`. */
export async function openDcpSession(
  address: NodeAddress,
  name: string,
  flags: number,
  options: SessionOptions = {},
): Promise<FrameConnection> {
  return guarded(address, options, async (conn) => {
    await auth(conn, options);
    const opaque = conn.allocateOpaque();
    const value = options.epoch === undefined ? undefined : epochValue(options.epoch);
    const response = await conn.request(encodeDcpOpen({ opaque, flags, name, value }), {
      opaque,
      opcode: Opcode.DCP_OPEN,
      timeoutMs: options.timeoutMs ?? 10_000,
    });
    const stale = StaleEpochError.from(response, conn.peer);
    if (stale) throw stale;
    if (response.status !== Status.Success)
      throw new StatusError(Opcode.DCP_OPEN, response.status, `${name} at ${conn.peer}`);
  });
}

/** A plain (KV and vBucket control) connection. */
export function openControlSession(
  address: NodeAddress,
  options: SessionOptions = {},
): Promise<FrameConnection> {
  return guarded(address, options, (conn) => auth(conn, options));
}

export async function getVBucketState(
  conn: FrameConnection,
  vb: number,
  timeoutMs = 10_000,
): Promise<VBucketState> {
  const opaque = conn.allocateOpaque();
  const response = await conn.request(encodeGetVBucket({ opaque, vbucket: vb }), {
    opaque,
    opcode: Opcode.GET_VBUCKET,
    timeoutMs,
  });
  const decoded = decodeGetVBucketResponse(response);
  if (decoded.status !== Status.Success)
    throw new StatusError(Opcode.GET_VBUCKET, decoded.status, `vb ${vb}`);
  return decoded.state!;
}

export async function setVBucketState(
  conn: FrameConnection,
  vb: number,
  state: VBucketState,
  timeoutMs = 10_000,
  /** The manager epoch fencing the change (JSON value {"epoch": N}); none when undefined. */
  epoch?: number,
): Promise<void> {
  const opaque = conn.allocateOpaque();
  const value = epoch === undefined ? undefined : epochValue(epoch);
  const response = await conn.request(encodeSetVBucket({ opaque, vbucket: vb, state, value }), {
    opaque,
    opcode: Opcode.SET_VBUCKET,
    timeoutMs,
  });
  const stale = StaleEpochError.from(response, conn.peer);
  if (stale) throw stale;
  if (response.status !== Status.Success)
    throw new StatusError(Opcode.SET_VBUCKET, response.status, `vb ${vb}`);
}
