import { expect, it } from 'vitest';
import { decodeFrame, type Frame, FrameDecoder } from '../../src/protocol/index.js';

/** Hex with `// comments` and whitespace, one field per line, to bytes. */
export function hexBytes(annotated: string): Buffer {
  const hex = annotated
    .split('\n')
    .map((line) => line.replace(/\/\/.*$/, ''))
    .join('')
    .replace(/[\s_]/g, '');
  if (hex.length % 2 !== 0 || /[^0-9a-fA-F]/.test(hex)) throw new Error(`bad golden hex: ${hex}`);
  return Buffer.from(hex, 'hex');
}

/** Every way to split `bytes` into two chunks gives the same single frame. */
export function splitsAtEveryOffset(bytes: Buffer): Frame[][] {
  const results: Frame[][] = [];
  for (let cut = 0; cut <= bytes.length; cut++) {
    const frames: Frame[] = [];
    const decoder = new FrameDecoder();
    decoder.push(bytes.subarray(0, cut), (f) => frames.push(f));
    decoder.push(bytes.subarray(cut), (f) => frames.push(f));
    results.push(frames);
  }
  return results;
}

/**
 * mqtt-packet-style fixture: four tests per golden frame — decode equals `fields`, encode equals the
 * bytes, decode(encode) round trip, and the frame decodes the same split at every offset.
 */
export function golden<T>(
  name: string,
  fields: T,
  annotatedHex: string,
  codec: { encode(message: T): Buffer; decode(frame: Frame): T },
): void {
  const bytes = hexBytes(annotatedHex);
  it(`${name}: decodes the golden bytes to the documented fields`, () => {
    expect(codec.decode(decodeFrame(bytes))).toEqual(fields);
  });
  it(`${name}: encodes the documented fields to the golden bytes`, () => {
    expect(codec.encode(fields).toString('hex')).toBe(bytes.toString('hex'));
  });
  it(`${name}: survives encode → decode → encode`, () => {
    const again = codec.encode(codec.decode(decodeFrame(codec.encode(fields))));
    expect(again.equals(bytes)).toBe(true);
  });
  it(`${name}: decodes identically when split at every offset`, () => {
    for (const frames of splitsAtEveryOffset(bytes)) {
      expect(frames).toHaveLength(1);
      expect(frames[0]!.bytes.equals(bytes)).toBe(true);
      expect(codec.decode(frames[0]!)).toEqual(fields);
    }
  });
}
