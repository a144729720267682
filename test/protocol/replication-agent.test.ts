import { describe, expect, it } from 'vitest';
import * as p from '../../src/protocol/index.js';

const frame = (bytes: Buffer) => p.decodeFrame(bytes);

describe("the replication agent's wire", () => {
  it('round-trips a topology and a takeover request', () => {
    const topology = p.decodeSetReplication(
      frame(p.encodeSetReplication({ opaque: 7, epoch: 12, sources: { '127.0.0.1:1': [3, 1], 'h:2': [] } })),
    );
    expect(topology).toEqual({
      opaque: 7,
      epoch: 12n,
      sources: new Map([
        ['127.0.0.1:1', [3, 1]],
        ['h:2', []],
      ]),
    });
    const takeover = p.decodeTakeoverRequest(
      frame(
        p.encodeTakeoverRequest({ opaque: 9, epoch: 4, vbucket: 1023, source: 'n1:11210', deadlineMs: 5000 }),
      ),
    );
    expect(takeover).toEqual({ opaque: 9, epoch: 4n, vbucket: 1023, source: 'n1:11210', deadlineMs: 5000 });
  });

  it.each([
    ['a vBucket under two sources', { epoch: 1, sources: { 'a:1': [0], 'b:1': [0] } }],
    ['a source that is not host:port', { epoch: 1, sources: { nope: [0] } }],
    ['a port out of range', { epoch: 1, sources: { 'a:70000': [0] } }],
    ['a vBucket that is not a number', { epoch: 1, sources: { 'a:1': ['0'] } }],
    ['sources that are not an object', { epoch: 1, sources: [] }],
    ['an epoch that is not a whole number', { epoch: 1.5, sources: {} }],
  ])('refuses a topology with %s as a malformed request', (_what, body) => {
    const bytes = p.encodeFrame({
      opcode: p.Opcode.DCPX_SET_REPLICATION,
      opaque: 1,
      datatype: p.Datatype.Json,
      value: Buffer.from(JSON.stringify(body)),
    });
    expect(() => p.decodeSetReplication(frame(bytes))).toThrow(p.ProtocolError);
  });

  it('refuses a takeover with no source, a bad vBucket or a deadline out of range', () => {
    for (const body of [
      { epoch: 1, vbucket: 0 },
      { epoch: 1, vbucket: -1, source: 'a:1' },
      { epoch: 1, vbucket: 0, source: 'a:1', deadlineMs: 0 },
      { epoch: 1, vbucket: 0, source: 'a:1', deadlineMs: 3_600_000 },
    ]) {
      const bytes = p.encodeFrame({
        opcode: p.Opcode.DCPX_TAKEOVER,
        opaque: 1,
        datatype: p.Datatype.Json,
        value: Buffer.from(JSON.stringify(body)),
      });
      expect(() => p.decodeTakeoverRequest(frame(bytes)), JSON.stringify(body)).toThrow(p.ProtocolError);
    }
  });

  it("reads the agent's error JSON from a refusal", () => {
    const bytes = p.encodeAgentError({
      opcode: p.Opcode.DCPX_TAKEOVER,
      opaque: 2,
      status: p.Status.Einternal,
      ref: p.TAKEOVER_FAILED_REF,
      context: 'why',
    });
    expect(p.readErrorJson(frame(bytes))).toEqual({ context: 'why', ref: 'takeover-failed' });
  });
});
