import { describe, expect, it } from 'vitest';
import { Opcode, Status, StatusError, VBucketState } from '../../src/protocol/index.js';
import { type AttemptEvent, TakeoverAttempt } from '../../src/proxy/takeover.js';

// dcp-spec §9: a kv_engine producer takes any SET_VBUCKET_STATE reply whose opaque matches for an
// ack, whatever its status; only a Success may reach it.

function attemptAwaiting(state: VBucketState) {
  const attempt = new TakeoverAttempt(3, 1, 0x8100_0003, 'connection');
  const events: AttemptEvent[] = [];
  attempt.listener = (event) => events.push(event);
  attempt.streamRequested(7);
  attempt.requestedState = state;
  return { attempt, events };
}

describe('a takeover attempt seeing the consumer answer a set-state', () => {
  it('keeps a refusal other than the retry ask from the producer and fails the attempt with its status', () => {
    const { attempt, events } = attemptAwaiting(VBucketState.Pending);
    expect(attempt.stateReplied(Status.Einval)).toBe(true);
    expect(events).toHaveLength(1);
    const event = events[0]!;
    expect(event.kind).toBe('error');
    const error = (event as { error: Error }).error;
    expect(error).toBeInstanceOf(StatusError);
    expect((error as StatusError).opcode).toBe(Opcode.DCP_SET_VBUCKET_STATE);
    expect((error as StatusError).status).toBe(Status.Einval);
    expect(attempt.pendingAcked).toBe(false);
  });

  it('lets a Success through as the ack it is', () => {
    const { attempt, events } = attemptAwaiting(VBucketState.Pending);
    expect(attempt.stateReplied(Status.Success)).toBe(false);
    expect(attempt.pendingAcked).toBe(true);
    expect(events).toEqual([{ kind: 'progress' }]);
  });
});
