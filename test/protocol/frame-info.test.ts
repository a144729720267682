import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeFrame,
  decodeRequestFrameInfos,
  encodeDurabilityFrameInfo,
  encodeStore,
  Magic,
  Opcode,
  ProtocolError,
} from '../../src/protocol/index.js';

describe('request frame infos', () => {
  it('reads the bytes the Couchbase SDK sends for durability majority with a 9 s timeout', () => {
    expect(decodeRequestFrameInfos(Buffer.from('13012328', 'hex'))).toEqual({
      durability: { level: 1, timeoutMs: 9000 },
      unknown: [],
    });
  });

  it('round-trips a durability requirement with and without a timeout', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        fc.option(fc.integer({ min: 1, max: 0xffff })),
        (level, t) => {
          const requirement = t === null ? { level } : { level, timeoutMs: t };
          expect(decodeRequestFrameInfos(encodeDurabilityFrameInfo(requirement)).durability).toEqual(
            requirement,
          );
        },
      ),
    );
  });

  it('treats a zero timeout as the node default and keeps an out-of-range level for the node to refuse', () => {
    expect(decodeRequestFrameInfos(Buffer.from('13000000', 'hex')).durability).toEqual({ level: 0 });
    expect(decodeRequestFrameInfos(Buffer.from('1107', 'hex')).durability).toEqual({ level: 7 });
  });

  it('reads escaped ids and lengths, and lists ids it does not know', () => {
    // preserve TTL (5, len 0), then id 15+3=18 with length 15+1=16
    const bytes = Buffer.concat([Buffer.from([0x50, 0xff, 3, 1]), Buffer.alloc(16)]);
    expect(decodeRequestFrameInfos(bytes)).toEqual({ preserveTtl: true, unknown: [18] });
  });

  it('refuses entries that run past the end, wrong lengths and a second durability requirement', () => {
    for (const hex of ['13', '1301', '1201', 'f0', '0f', '12010203', '11011101', '21ff']) {
      expect(() => decodeRequestFrameInfos(Buffer.from(hex, 'hex')), hex).toThrow(ProtocolError);
    }
  });

  it('never throws anything but ProtocolError on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
        try {
          decodeRequestFrameInfos(Buffer.from(bytes));
        } catch (error) {
          expect(error).toBeInstanceOf(ProtocolError);
        }
      }),
    );
  });

  it('makes a store request with a durability requirement an alt request the frame decoder reads back', () => {
    const bytes = encodeStore({
      opcode: Opcode.SET,
      opaque: 7,
      vbucket: 3,
      cas: 0n,
      datatype: 0,
      flags: 0,
      expiration: 0,
      key: Buffer.from('k'),
      value: Buffer.from('v'),
      framingExtras: encodeDurabilityFrameInfo({ level: 1, timeoutMs: 500 }),
    });
    const frame = decodeFrame(bytes);
    expect(frame.magic).toBe(Magic.AltRequest);
    expect(decodeRequestFrameInfos(frame.framingExtras).durability).toEqual({ level: 1, timeoutMs: 500 });
    expect(frame.key.toString()).toBe('k');
    expect(frame.value.toString()).toBe('v');
  });
});
