import fc from 'fast-check';
import { encodeFrame, type FrameSpec, Magic, Opcode } from '../../src/protocol/index.js';

export const u8 = fc.integer({ min: 0, max: 0xff });
export const u16 = fc.integer({ min: 0, max: 0xffff });
export const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
export const u64 = fc.bigInt({ min: 0n, max: 0xffff_ffff_ffff_ffffn });
export const bytes = (maxLength = 64) => fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));
export const nonEmptyBytes = (maxLength = 64) =>
  fc.uint8Array({ minLength: 1, maxLength }).map((a) => Buffer.from(a));

/** A well-formed frame of a random (known or unknown) opcode whose extras the decoder accepts. */
export const frameSpec: fc.Arbitrary<FrameSpec> = fc
  .record({
    response: fc.boolean(),
    opcode: fc.constantFrom(
      Opcode.DCP_MUTATION,
      Opcode.DCP_NOOP,
      Opcode.DCP_STREAM_END,
      0xa0,
      0xf1,
      Opcode.GET,
    ),
    vbucket: u16,
    opaque: u32,
    cas: u64,
    datatype: u8,
    key: bytes(40),
    value: bytes(300),
  })
  .map(({ response, opcode, vbucket, opaque, cas, datatype, key, value }): FrameSpec => {
    const base = { opcode, opaque, cas, datatype, key, value };
    if (response) return { ...base, magic: Magic.Response, status: 0x86 };
    const extras =
      opcode === Opcode.DCP_MUTATION
        ? Buffer.alloc(31, 1)
        : opcode === Opcode.DCP_STREAM_END
          ? Buffer.alloc(4, 2)
          : opcode === Opcode.DCP_NOOP || opcode === Opcode.GET
            ? Buffer.alloc(0)
            : Buffer.alloc(opaque % 9, 3);
    return { ...base, magic: Magic.Request, vbucket, extras };
  });

export const frameBytes = frameSpec.map((spec) => encodeFrame(spec));
