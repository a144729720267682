import { Opcode, VBucketState } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { badValue, checkU16, expectExtras, expectRequest, type RequestEnvelope } from './codec.js';

// DCP_SET_VBUCKET_STATE (0x5b), dcp-spec §4.11. Extras (1): | 0 | 1 | state (1 active, 2 replica,
// 3 pending, 4 dead) |. Carries the stream opaque; the consumer must answer (a StatusResponse with the
// stream opaque), and the producer waits for that ack (dcp-spec §9). Flow-control size 25.

export interface SetVBucketStateRequest extends RequestEnvelope {
  state: VBucketState;
}

const STATES: ReadonlySet<number> = new Set(Object.values(VBucketState));

export function encodeSetVBucketState(request: SetVBucketStateRequest): Buffer {
  if (!STATES.has(request.state)) throw new RangeError(`vbucket state ${request.state} is not 1..4`);
  return encodeFrame({
    opcode: Opcode.DCP_SET_VBUCKET_STATE,
    vbucket: checkU16(Opcode.DCP_SET_VBUCKET_STATE, 'vbucket', request.vbucket),
    opaque: request.opaque,
    extras: Buffer.from([request.state]),
  });
}

export function decodeSetVBucketState(frame: Frame): SetVBucketStateRequest {
  expectRequest(frame, Opcode.DCP_SET_VBUCKET_STATE);
  expectExtras(frame, 1);
  const state = frame.extras[0]!;
  if (!STATES.has(state)) throw badValue(frame, `vbucket state ${state} is not 1..4`);
  return { opaque: frame.opaque, vbucket: frame.vbucket, state: state as VBucketState };
}
