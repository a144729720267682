import { Datatype, isResponseMagic, opcodeName, Status } from '../constants.js';
import { DcpxError } from '../errors.js';
import type { Frame } from '../frame.js';
import { badValue, readJsonObject } from './codec.js';
import { encodeStatusResponse } from './status-response.js';

// The manager epoch on node commands (DESIGN.md "Cluster operations", fencing): a number that only
// grows from one manager leader to the next. It travels
// - in SET_CLUSTER_CONFIG's extras (cluster-config.ts);
// - in the JSON value of SET_VBUCKET (beside kv_engine's topology), DEL_VBUCKET and DCP_OPEN (beside
//   kv_engine's consumer_name): {"epoch": N}.
// A node that has seen a higher epoch refuses with EACCESS and kv_engine's error JSON (datatype JSON):
//   {"error":{"context":"stale manager epoch 3; this node has seen 5","ref":"stale-epoch"}}
// The `ref` tells a manager it was fenced (stop acting), as opposed to an authorisation failure.

export const STALE_EPOCH_REF = 'stale-epoch';

/** The JSON value carrying `epoch`, merged into `extra` fields (topology, consumer_name…) if any. */
export function epochValue(epoch: number, extra: Record<string, unknown> = {}): Buffer {
  return Buffer.from(JSON.stringify({ ...extra, epoch }));
}

/**
 * The `epoch` of a request's JSON value: undefined when there is no value or it has no epoch; throws
 * (the request is malformed) when the value is not a JSON object or the epoch not a whole number ≥ 0.
 */
export function readEpoch(frame: Frame, value: Buffer | undefined): bigint | undefined {
  const epoch = readJsonObject(frame, value)?.epoch;
  if (epoch === undefined) return undefined;
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 0)
    throw badValue(frame, `manager epoch ${JSON.stringify(epoch)} is not a whole number >= 0`);
  return BigInt(epoch);
}

export interface StaleEpochResponse {
  opcode: number;
  opaque: number;
  /** The request's epoch; undefined when it carried none. */
  epoch: bigint | undefined;
  /** The highest epoch the node has seen. */
  seen: bigint;
}

/** The text of a stale-epoch refusal. */
export function staleEpochContext(epoch: bigint | undefined, seen: bigint): string {
  return epoch === undefined
    ? `no manager epoch; this node has seen ${seen}`
    : `stale manager epoch ${epoch}; this node has seen ${seen}`;
}

/** EACCESS with kv_engine's error JSON, `ref` "stale-epoch". */
export function encodeStaleEpochResponse(response: StaleEpochResponse): Buffer {
  const body = { error: { context: staleEpochContext(response.epoch, response.seen), ref: STALE_EPOCH_REF } };
  return encodeStatusResponse({
    opcode: response.opcode,
    opaque: response.opaque,
    status: Status.Eaccess,
    datatype: Datatype.Json,
    value: Buffer.from(JSON.stringify(body)),
  });
}

/** kv_engine's error JSON of a response, or undefined when it has none. */
export function readErrorJson(frame: Frame): { context?: string; ref?: string } | undefined {
  if (!isResponseMagic(frame.magic) || frame.datatype !== Datatype.Json || frame.valueLength === 0)
    return undefined;
  try {
    const parsed: unknown = JSON.parse(frame.value.toString('utf8'));
    const error = (parsed as { error?: unknown } | null)?.error;
    if (typeof error !== 'object' || error === null) return undefined;
    const { context, ref } = error as { context?: unknown; ref?: unknown };
    return {
      ...(typeof context === 'string' ? { context } : {}),
      ...(typeof ref === 'string' ? { ref } : {}),
    };
  } catch {
    return undefined;
  }
}

/** True when `frame` is a node's refusal of a stale (or missing) manager epoch: the sender is fenced. */
export function isStaleEpoch(frame: Frame): boolean {
  return frame.status === Status.Eaccess && readErrorJson(frame)?.ref === STALE_EPOCH_REF;
}

/** A node refused a command for a stale (or missing) manager epoch: the sender is fenced, stop acting. */
export class StaleEpochError extends DcpxError {
  readonly opcode: number;
  /** The node's reason, e.g. "stale manager epoch 3; this node has seen 5". */
  readonly context: string;
  constructor(opcode: number, context: string, where = '') {
    super('DCPX_ERR_STALE_EPOCH', `${opcodeName(opcode)} refused${where ? ` by ${where}` : ''}: ${context}`);
    this.opcode = opcode;
    this.context = context;
  }

  /** The error for a refusal `frame` (isStaleEpoch), or undefined when it is not one. */
  static from(frame: Frame, where = ''): StaleEpochError | undefined {
    if (!isStaleEpoch(frame)) return undefined;
    return new StaleEpochError(frame.opcode, readErrorJson(frame)?.context ?? 'stale manager epoch', where);
  }
}
