import { Datatype, Opcode } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { badValue, EMPTY, expectExtras, expectRequest } from './codec.js';
import { readEpoch } from './manager-epoch.js';
import { encodeStatusResponse } from './status-response.js';

// The dcpx-private commands by which a cluster manager drives a node's replication agent (DESIGN.md
// "Part 2: the replication agent"). Opcodes 0xe0–0xe2 are unused by kv_engine; no extras, no key; the
// request value is JSON (datatype JSON) and carries the manager epoch, fenced as SET_VBUCKET is.
//
// DCPX_SET_REPLICATION 0xe0  {"epoch":N,"sources":{"host:port":[vb,...],...}}  → status only
// DCPX_TAKEOVER        0xe1  {"epoch":N,"vbucket":V,"source":"host:port","deadlineMs":M}
//                            → Success {"attempts":a,"ms":t}; failures carry kv_engine's error JSON
//                              {"error":{"context":"...","ref":"takeover-failed"|"takeover-unknown"}}
// DCPX_GET_REPLICATION 0xe2  (no value) → {"epoch":N,"sources":{"h:p":{"wanted":[..],"open":[..]}},
//                                           "itemsReceived":n}

/** The takeover failed and the source is active again (the move may be retried). */
export const TAKEOVER_FAILED_REF = 'takeover-failed';
/** The takeover's outcome is not settled (a node stayed unreachable): re-read the states. */
export const TAKEOVER_UNKNOWN_REF = 'takeover-unknown';

const ADDRESS = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;
const MAX_DEADLINE_MS = 10 * 60_000;

export interface SetReplicationRequest {
  opaque: number;
  /** Undefined: the request carried none (refused by a managed node). */
  epoch: bigint | undefined;
  /** Source node → the vBuckets this node streams from it. */
  sources: Map<string, number[]>;
}

export interface TakeoverRequest {
  opaque: number;
  epoch: bigint | undefined;
  vbucket: number;
  source: string;
  deadlineMs: number;
}

export interface ReplicationAgentStatus {
  epoch: number;
  sources: Record<string, { wanted: number[]; open: number[] }>;
  itemsReceived: number;
}

function jsonObject(frame: Frame): Record<string, unknown> {
  if (frame.datatype !== Datatype.Json) throw badValue(frame, 'the value must be JSON (datatype JSON)');
  let parsed: unknown;
  try {
    parsed = JSON.parse(frame.value.toString('utf8'));
  } catch {
    throw badValue(frame, 'the JSON value does not parse');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw badValue(frame, 'the JSON value is not an object');
  return parsed as Record<string, unknown>;
}

function address(frame: Frame, value: unknown, what: string): string {
  if (typeof value !== 'string' || !ADDRESS.test(value)) throw badValue(frame, `${what} must be host:port`);
  const port = Number(value.slice(value.lastIndexOf(':') + 1));
  if (port < 1 || port > 65535) throw badValue(frame, `${what} has port ${port}`);
  return value;
}

function vbucketId(frame: Frame, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0xffff)
    throw badValue(frame, `vBucket ${JSON.stringify(value)} is not a number in 0..65535`);
  return value;
}

function request(opcode: number, opaque: number, value: Buffer): Buffer {
  return encodeFrame({ opcode, opaque, datatype: value.length > 0 ? Datatype.Json : 0, value });
}

export function encodeSetReplication(input: {
  opaque: number;
  epoch: number;
  sources: Readonly<Record<string, readonly number[]>>;
}): Buffer {
  const body = { epoch: input.epoch, sources: input.sources };
  return request(Opcode.DCPX_SET_REPLICATION, input.opaque, Buffer.from(JSON.stringify(body)));
}

/** Throws ProtocolError (the connection is closed as a bad request) on a malformed value. */
export function decodeSetReplication(frame: Frame): SetReplicationRequest {
  expectRequest(frame, Opcode.DCPX_SET_REPLICATION);
  expectExtras(frame, 0);
  const body = jsonObject(frame);
  const epoch = readEpoch(frame, frame.value);
  const raw = body.sources;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw badValue(frame, 'sources must be an object of host:port → [vBucket...]');
  const sources = new Map<string, number[]>();
  const claimed = new Set<number>();
  for (const [source, list] of Object.entries(raw)) {
    address(frame, source, 'a source');
    if (!Array.isArray(list)) throw badValue(frame, `sources["${source}"] must be an array`);
    const vbs = list.map((vb) => vbucketId(frame, vb));
    for (const vb of vbs) {
      // one incoming stream per vBucket: two sources for one would be two writers into one copy
      if (claimed.has(vb)) throw badValue(frame, `vBucket ${vb} is named under two sources`);
      claimed.add(vb);
    }
    sources.set(source, vbs);
  }
  return { opaque: frame.opaque, epoch, sources };
}

export function encodeTakeoverRequest(input: {
  opaque: number;
  epoch: number;
  vbucket: number;
  source: string;
  deadlineMs: number;
}): Buffer {
  const { opaque, ...body } = input;
  return request(Opcode.DCPX_TAKEOVER, opaque, Buffer.from(JSON.stringify(body)));
}

export function decodeTakeoverRequest(frame: Frame): TakeoverRequest {
  expectRequest(frame, Opcode.DCPX_TAKEOVER);
  expectExtras(frame, 0);
  const body = jsonObject(frame);
  const epoch = readEpoch(frame, frame.value);
  const deadlineMs = body.deadlineMs ?? 60_000;
  if (
    typeof deadlineMs !== 'number' ||
    !Number.isInteger(deadlineMs) ||
    deadlineMs < 1 ||
    deadlineMs > MAX_DEADLINE_MS
  )
    throw badValue(frame, `deadlineMs must be a whole number in 1..${MAX_DEADLINE_MS}`);
  return {
    opaque: frame.opaque,
    epoch,
    vbucket: vbucketId(frame, body.vbucket),
    source: address(frame, body.source, 'source'),
    deadlineMs,
  };
}

export function encodeGetReplication(input: { opaque: number }): Buffer {
  return request(Opcode.DCPX_GET_REPLICATION, input.opaque, EMPTY);
}

/** A JSON answer (Success with a body, or a failure with kv_engine's error JSON). */
export function encodeAgentJsonResponse(input: {
  opcode: number;
  opaque: number;
  status: number;
  body: unknown;
}): Buffer {
  return encodeStatusResponse({
    opcode: input.opcode,
    opaque: input.opaque,
    status: input.status,
    datatype: Datatype.Json,
    value: Buffer.from(JSON.stringify(input.body)),
  });
}

/** A refusal with kv_engine's error JSON `{"error":{"context","ref"}}`. */
export function encodeAgentError(input: {
  opcode: number;
  opaque: number;
  status: number;
  ref: string;
  context: string;
}): Buffer {
  const { ref, context, ...rest } = input;
  return encodeAgentJsonResponse({ ...rest, body: { error: { context, ref } } });
}

/** The JSON body of an agent's answer; undefined when there is none. */
export function readAgentJson(frame: Frame): unknown {
  if (frame.valueLength === 0 || frame.datatype !== Datatype.Json) return undefined;
  try {
    return JSON.parse(frame.value.toString('utf8'));
  } catch {
    return undefined;
  }
}
