import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeFrames,
  encodeFrame,
  encodeMutation,
  type Frame,
  FrameDecoder,
  Magic,
  Opcode,
  ProtocolError,
} from '../../src/protocol/index.js';
import { frameBytes } from '../helpers/arbitraries.js';
import { cut } from '../helpers/chunks.js';

function decodeChunks(chunks: Buffer[], maxBodyLength?: number): Buffer[] {
  const decoder = new FrameDecoder({ maxBodyLength });
  const out: Buffer[] = [];
  for (const chunk of chunks) decoder.push(chunk, (f) => out.push(Buffer.from(f.bytes)));
  expect(decoder.bufferedBytes).toBe(0);
  return out;
}

describe('FrameDecoder', () => {
  it('yields the same frames whatever the chunking', () => {
    fc.assert(
      fc.property(
        fc.array(frameBytes, { maxLength: 30 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        (frames, cuts) => {
          const stream = Buffer.concat(frames);
          const decoded = decodeChunks(cut(stream, cuts));
          expect(decoded.map((b) => b.toString('hex'))).toEqual(frames.map((b) => b.toString('hex')));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('hands each frame once, in order, to `take` or as a Frame, whatever the chunking', () => {
    fc.assert(
      fc.property(
        fc.array(frameBytes, { maxLength: 30 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        fc.array(fc.boolean(), { maxLength: 30 }),
        (frames, cuts, taken) => {
          const decoder = new FrameDecoder();
          const seen: string[] = [];
          let i = 0;
          for (const chunk of cut(Buffer.concat(frames), cuts)) {
            decoder.push(
              chunk,
              (f) => {
                seen.push(`frame ${Buffer.from(f.bytes).toString('hex')}`);
                i++;
              },
              (buffer, offset) => {
                if (!(taken[i] ?? false)) return false;
                const length = 24 + buffer.readUInt32BE(offset + 8);
                seen.push(`taken ${buffer.subarray(offset, offset + length).toString('hex')}`);
                i++;
                return true;
              },
            );
          }
          expect(seen).toEqual(
            frames.map((f, k) => `${(taken[k] ?? false) ? 'taken' : 'frame'} ${f.toString('hex')}`),
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  it('yields the same frames when fed one byte at a time', () => {
    fc.assert(
      fc.property(fc.array(frameBytes, { maxLength: 10 }), (frames) => {
        const stream = Buffer.concat(frames);
        const chunks = [...stream].map((b) => Buffer.from([b]));
        expect(Buffer.concat(decodeChunks(chunks)).equals(stream)).toBe(true);
      }),
      { numRuns: 100 },
    );
  });

  it('hands out thousands of frames from one chunk as views of that chunk, without copying', () => {
    const one = encodeMutation({
      opaque: 1,
      vbucket: 2,
      cas: 3n,
      datatype: 0,
      bySeqno: 1n,
      revSeqno: 1n,
      flags: 0,
      expiration: 0,
      lockTime: 0,
      nru: 0,
      key: Buffer.from('key'),
      value: Buffer.alloc(100, 7),
    });
    const chunk = Buffer.concat(Array.from({ length: 5000 }, () => one));
    const frames: Frame[] = [];
    new FrameDecoder().push(chunk, (f) => frames.push(f));
    expect(frames).toHaveLength(5000);
    for (const f of frames) expect(f.buffer).toBe(chunk);
    expect(frames[4999]!.offset).toBe(4999 * one.length);
  });

  it('copies a frame that spans chunks exactly once into a buffer of its own size', () => {
    const big = encodeFrame({
      opcode: Opcode.SET,
      extras: Buffer.alloc(8),
      key: 'k',
      value: Buffer.alloc(100_000, 1),
    });
    const frames: Frame[] = [];
    const decoder = new FrameDecoder();
    for (let at = 0; at < big.length; at += 1000)
      decoder.push(big.subarray(at, at + 1000), (f) => frames.push(f));
    expect(frames).toHaveLength(1);
    expect(frames[0]!.buffer.length).toBe(big.length);
    expect(frames[0]!.bytes.equals(big)).toBe(true);
  });

  it('never throws anything but ProtocolError on random frames behind a known magic, and stays failed', () => {
    // a random first byte is almost never a magic: start each frame with one so the other rules are reached
    const randomFrame = fc
      .record({
        magic: fc.constantFrom(...Object.values(Magic)),
        header: fc.uint8Array({ minLength: 23, maxLength: 23 }),
        bodyLength: fc.nat({ max: 300 }),
        body: fc.uint8Array({ maxLength: 300 }),
      })
      .map(({ magic, header, bodyLength, body }) => {
        const frame = Buffer.concat([Buffer.from([magic]), Buffer.from(header), Buffer.from(body)]);
        frame[2] = magic === Magic.AltRequest || magic === Magic.AltResponse ? frame[2]! % 8 : 0;
        frame[3] = frame[3]! % 64; // key length
        frame[4] = frame[4]! % 40; // extras length
        frame.writeUInt32BE(bodyLength, 8);
        return frame;
      });
    const outcomes = new Map<string, number>();
    fc.assert(
      fc.property(
        fc.array(randomFrame, { minLength: 1, maxLength: 5 }),
        fc.array(fc.nat()),
        (frames, cuts) => {
          const decoder = new FrameDecoder({ maxBodyLength: 256 });
          let outcome = 'whole frames';
          try {
            for (const c of cut(Buffer.concat(frames), cuts)) decoder.push(c, () => {});
          } catch (error) {
            expect(error).toBeInstanceOf(ProtocolError);
            outcome = (error as ProtocolError).code;
            expect(() => decoder.push(Buffer.alloc(1), () => {})).toThrow(error as ProtocolError);
          }
          outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        },
      ),
      { numRuns: 2000 },
    );
    // the property reached every rule, not only the magic check
    for (const outcome of [
      'whole frames',
      'DCPX_ERR_BAD_MAGIC',
      'DCPX_ERR_BODY_TOO_SHORT',
      'DCPX_ERR_BODY_TOO_LARGE',
      'DCPX_ERR_BAD_EXTRAS',
    ]) {
      expect(outcomes.get(outcome) ?? 0, outcome).toBeGreaterThan(20);
    }
  });

  it('never throws anything but ProtocolError on valid frames with random corruption', () => {
    fc.assert(
      fc.property(
        fc.array(frameBytes, { minLength: 1, maxLength: 5 }),
        fc.nat(),
        u8Arb(),
        (frames, at, byte) => {
          const stream = Buffer.concat(frames);
          stream[at % stream.length] = byte;
          try {
            decodeFrames(stream, { maxBodyLength: 4096 });
          } catch (error) {
            expect(error).toBeInstanceOf(ProtocolError);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

function u8Arb() {
  return fc.integer({ min: 0, max: 255 });
}

describe('FrameDecoder rejects malformed frames with a ProtocolError that says what and where', () => {
  const good = encodeFrame({ opcode: Opcode.DCP_NOOP, opaque: 1 });

  function rejection(bytes: Buffer, options = {}): ProtocolError {
    try {
      decodeFrames(Buffer.concat([good, bytes]), options);
    } catch (error) {
      if (error instanceof ProtocolError) return error;
      throw error;
    }
    throw new Error('no error');
  }

  it('rejects an unknown magic with DCPX_ERR_BAD_MAGIC at the frame offset', () => {
    const bad = Buffer.from(good);
    bad[0] = 0x42;
    const error = rejection(bad);
    expect(error.code).toBe('DCPX_ERR_BAD_MAGIC');
    expect(error.offset).toBe(24);
    expect(error.header?.magic).toBe(0x42);
    expect(error.message).toContain('unknown magic 0x42');
    expect(error.message).toContain('at stream offset 24');
  });

  it('rejects a body shorter than extras + key with DCPX_ERR_BODY_TOO_SHORT', () => {
    const bad = encodeFrame({ opcode: 0xa0, extras: Buffer.alloc(4), key: 'abc' });
    bad.writeUInt32BE(5, 8);
    const error = rejection(bad);
    expect(error.code).toBe('DCPX_ERR_BODY_TOO_SHORT');
    expect(error.header).toMatchObject({ extrasLength: 4, keyLength: 3, bodyLength: 5 });
  });

  it('rejects a body over the configured limit before buffering it', () => {
    const bad = encodeFrame({
      opcode: Opcode.SET,
      extras: Buffer.alloc(8),
      key: 'k',
      value: Buffer.alloc(2000),
    });
    const error = rejection(bad.subarray(0, 24), { maxBodyLength: 1024 });
    expect(error.code).toBe('DCPX_ERR_BODY_TOO_LARGE');
    expect(error.message).toContain('over the limit of 1024');
  });

  it('uses a default limit of 20 MiB', () => {
    const header = encodeFrame({ opcode: Opcode.SET, extras: Buffer.alloc(8) });
    header.writeUInt32BE(20 * 1024 * 1024 + 1, 8);
    expect(rejection(header.subarray(0, 24)).code).toBe('DCPX_ERR_BODY_TOO_LARGE');
  });

  it('rejects a known opcode with extras of the wrong size with DCPX_ERR_BAD_EXTRAS', () => {
    const bad = encodeFrame({ opcode: Opcode.DCP_MUTATION, extras: Buffer.alloc(30), key: 'k' });
    const error = rejection(bad);
    expect(error.code).toBe('DCPX_ERR_BAD_EXTRAS');
    expect(error.message).toContain('DCP_MUTATION has 30 bytes of extras, expected 31');
  });

  it('rejects a successful GET response without its 4 bytes of flags', () => {
    const bad = encodeFrame({ opcode: Opcode.GET, status: 0, value: 'v' });
    expect(rejection(bad).code).toBe('DCPX_ERR_BAD_EXTRAS');
  });

  it('accepts an error response of a known opcode without extras', () => {
    const ok = encodeFrame({ opcode: Opcode.GET, status: 0x01, value: 'Not found' });
    expect(decodeFrames(ok)).toHaveLength(1);
  });

  it('decodes the alt framing 0x08 with framing extras and a one-byte key length', () => {
    const frame = encodeFrame({
      magic: Magic.AltRequest,
      opcode: Opcode.DCP_MUTATION,
      framingExtras: Buffer.from([0x22, 0x00, 0x05]),
      extras: Buffer.alloc(31),
      key: 'key',
      value: 'value',
      vbucket: 9,
    });
    expect(frame[2]).toBe(3);
    expect(frame[3]).toBe(3);
    const [decoded] = decodeFrames(frame);
    expect(decoded!.framingExtras.toString('hex')).toBe('220005');
    expect(decoded!.key.toString()).toBe('key');
    expect(decoded!.value.toString()).toBe('value');
    expect(decoded!.vbucket).toBe(9);
  });

  it('recognises the server-initiated magics 0x82 and 0x83', () => {
    for (const magic of [Magic.ServerRequest, Magic.ServerResponse]) {
      const frame = encodeFrame({ magic, opcode: 0x01, key: 'x', value: '{}' });
      expect(decodeFrames(frame)[0]!.magic).toBe(magic);
    }
  });

  it('stays failed after an error so no later bytes are misread as frames', () => {
    const decoder = new FrameDecoder();
    expect(() => decoder.push(Buffer.alloc(24, 0x42), () => {})).toThrow(ProtocolError);
    expect(() => decoder.push(good, () => {})).toThrow(/unknown magic/);
  });
});
