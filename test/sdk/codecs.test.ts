import { describe, expect, it } from 'vitest';
import * as p from '../../src/protocol/index.js';

// The codecs of the SDK's data-service commands (src/protocol/messages/kv-touch.ts, kv-get-meta.ts,
// kv-select-bucket.ts, kv-error-map.ts, clustermap-notification.ts): round trips, and one refusal per
// layout rule, each a ProtocolError.

const key = Buffer.from('doc');
const frame = (bytes: Buffer) => p.decodeFrame(bytes);

describe('SDK command codecs', () => {
  it.each([
    [p.Opcode.TOUCH, { expiration: 60 }],
    [p.Opcode.GAT, { expiration: 0x7fff_ffff }],
    [p.Opcode.GATQ, { expiration: 0 }],
    [p.Opcode.GET_REPLICA, {}],
    [p.Opcode.GET_LOCKED, { lockTime: 30 }],
    [p.Opcode.GET_LOCKED, {}],
    [p.Opcode.UNLOCK_KEY, { cas: 0x0102_0304_0506_0708n }],
  ] as const)('round-trips key command 0x%s with %o', (opcode, fields) => {
    const request: p.KeyCommandRequest = { opcode, opaque: 7, vbucket: 513, key, cas: 0n, ...fields };
    expect(p.decodeKeyCommand(frame(p.encodeKeyCommand(request)))).toEqual(request);
  });

  it('refuses a key command without a key, with a value, or with extras its layout does not have', () => {
    const bad = [
      p.encodeFrame({ opcode: p.Opcode.TOUCH, opaque: 1, extras: Buffer.alloc(4) }),
      p.encodeFrame({ opcode: p.Opcode.TOUCH, opaque: 1, key, value: 'x', extras: Buffer.alloc(4) }),
      p.encodeFrame({ opcode: p.Opcode.TOUCH, opaque: 1, key }),
      p.encodeFrame({ opcode: p.Opcode.GET_REPLICA, opaque: 1, key, extras: Buffer.alloc(4) }),
      p.encodeFrame({ opcode: p.Opcode.GET_LOCKED, opaque: 1, key, extras: Buffer.alloc(2) }),
    ];
    for (const bytes of bad) expect(() => p.decodeKeyCommand(frame(bytes))).toThrow(p.ProtocolError);
  });

  it('round-trips GET_META requests of both versions and refuses an unknown version', () => {
    for (const version of [1, 2] as const) {
      const request: p.GetMetaRequest = { opcode: p.Opcode.GET_META, opaque: 9, vbucket: 3, key, version };
      expect(p.decodeGetMeta(frame(p.encodeGetMeta(request)))).toEqual(request);
    }
    const v3 = p.encodeFrame({ opcode: p.Opcode.GET_META, opaque: 1, key, extras: Buffer.from([3]) });
    expect(() => p.decodeGetMeta(frame(v3))).toThrow(p.ProtocolError);
  });

  it('lays out a GET_META answer as kv_engine does: deleted, flags, expiry, rev seqno, then the datatype', () => {
    const bytes = p.encodeGetMetaResponse({
      opcode: p.Opcode.GET_META,
      opaque: 1,
      cas: 5n,
      deleted: true,
      flags: 0x0200_0000,
      expiry: 1_700_000_000,
      revSeqno: 9n,
      datatype: p.Datatype.Json,
    });
    expect(frame(bytes).extras.toString('hex')).toBe('00000001020000006553f1000000000000000009' + '01');
  });

  it('round-trips SELECT_BUCKET and GET_ERROR_MAP, and refuses a version that is not 2 bytes', () => {
    expect(p.decodeSelectBucket(frame(p.encodeSelectBucket({ opaque: 2, bucket: 'default' })))).toEqual({
      opaque: 2,
      bucket: 'default',
    });
    expect(p.decodeGetErrorMap(frame(p.encodeGetErrorMap({ opaque: 3, version: 2 })))).toEqual({
      opaque: 3,
      version: 2,
    });
    const short = p.encodeFrame({ opcode: p.Opcode.GET_ERROR_MAP, opaque: 1, value: Buffer.from([2]) });
    expect(() => p.decodeGetErrorMap(frame(short))).toThrow(p.ProtocolError);
  });

  it('builds error maps whose every entry the SDK can read (name, desc, attrs; hex codes)', () => {
    const map = JSON.parse(p.buildErrorMap(1).toString());
    expect(map.version).toBe(1);
    expect(map.errors['84']).toEqual({ name: 'EINTERNAL', desc: 'internal error', attrs: ['internal'] });
    expect(map.errors.e).toEqual({
      name: 'NOT_LOCKED',
      desc: 'the document is not locked',
      attrs: ['item-only'],
    });
  });

  it('round-trips a clustermap push, full and brief, as a server request (magic 0x82, opcode 0x01)', () => {
    const full = { epoch: 2n, revision: 77n, bucket: 'default', config: Buffer.from('{"rev":77}') };
    const bytes = p.encodeClustermapNotification(full);
    const f = frame(bytes);
    expect([f.magic, f.opcode, f.opaque, f.datatype]).toEqual([0x82, 0x01, 0, p.Datatype.Json]);
    expect(p.decodeClustermapNotification(f)).toEqual(full);
    const brief = { epoch: -1n, revision: 1_790_000_000_000n, bucket: '' };
    expect(p.decodeClustermapNotification(frame(p.encodeClustermapNotification(brief)))).toEqual(brief);
    expect(() => p.decodeClustermapNotification(frame(p.encodeNoop({ opaque: 1 })))).toThrow(p.ProtocolError);
  });
});
