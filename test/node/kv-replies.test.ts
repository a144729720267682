import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { getHitReply, writeSuccessReply } from '../../src/node/kv-replies.js';
import {
  encodeGetResponse,
  encodeWriteResponse,
  GET_OPCODES,
  Opcode,
  Status,
  WRITE_OPCODES,
} from '../../src/protocol/index.js';

const u64 = fc.bigInt({ min: 0n, max: 0xffff_ffff_ffff_ffffn });
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((a) => Buffer.from(a));

describe('the KV fast replies', () => {
  it('write a GET hit byte for byte as encodeGetResponse does', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...GET_OPCODES),
        u32,
        u64,
        fc.integer({ min: 0, max: 0xff }),
        u32,
        fc.boolean(),
        bytes(250),
        bytes(3000),
        (opcode, opaque, cas, datatype, flags, withKey, key, value) => {
          const k = withKey ? key : Buffer.alloc(0);
          const slow = encodeGetResponse({
            opcode,
            opaque,
            status: Status.Success,
            cas,
            datatype,
            flags,
            key: k,
            value,
          });
          expect(getHitReply(opcode, opaque, cas, datatype, flags, k, value).equals(slow)).toBe(true);
        },
      ),
    );
  });

  it('write a successful write response without a mutation token as encodeWriteResponse does', () => {
    fc.assert(
      fc.property(fc.constantFrom(...WRITE_OPCODES), u32, u64, (opcode, opaque, cas) => {
        const slow = encodeWriteResponse({
          opcode,
          opaque,
          status: Status.Success,
          cas,
          datatype: 0,
          value: Buffer.alloc(0),
        });
        expect(writeSuccessReply(opcode, opaque, cas).equals(slow)).toBe(true);
      }),
    );
  });

  it('are not views of one shared buffer: a reply queued earlier keeps its bytes', () => {
    const first = writeSuccessReply(Opcode.SET, 1, 7n);
    const copy = Buffer.from(first);
    writeSuccessReply(Opcode.SET, 2, 9n);
    getHitReply(Opcode.GET, 3, 5n, 0, 0, Buffer.alloc(0), Buffer.from('v'));
    expect(first.equals(copy)).toBe(true);
  });
});
