import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  decodeArithmeticResponse,
  decodeFrame,
  decodeMutationTokenExtras,
  decodeWriteResponse,
  type Frame,
  Opcode,
  ProtocolError,
} from '../../src/protocol/index.js';
import {
  type Decode,
  type FuzzReport,
  fuzzFrames,
  messageDecoders,
  seedCorpus,
} from '../fuzz/frame-fuzzer.js';
import { frameBytes } from '../helpers/arbitraries.js';

// 10^5 mutated valid frames in the suite (a fixed seed, so a failure is reproduced exactly);
// `npm run fuzz` runs 10^6 with a fresh seed each time. Crashes found by fuzzing are pinned below.

const SEED = 0x5eed_d0c5;
const corpus = seedCorpus(fc.sample(frameBytes, { numRuns: 500, seed: SEED }));

function describeCrashes(report: FuzzReport): string {
  return report.crashes
    .map((c) => `case ${c.caseIndex} (seed ${c.seed}) ${c.where} [${c.mutations}]: ${c.error}\n  ${c.input}`)
    .join('\n');
}

describe('fuzzing the frame decoder and every message decoder from mutated valid frames', () => {
  let report: FuzzReport;
  beforeAll(() => {
    report = fuzzFrames({ cases: 100_000, seed: SEED, corpus });
  });

  it('lets nothing but a ProtocolError escape from 10^5 mutated frames, and decodes nothing absurdly large', () => {
    expect(report.cases).toBe(100_000);
    expect(report.crashCount, describeCrashes(report)).toBe(0);
  });

  it('gets past the magic check: most cases reach a message decoder, every framer rule is hit', () => {
    expect(report.frames).toBeGreaterThan(report.cases / 2);
    expect(report.framer.DCPX_ERR_BAD_MAGIC ?? 0).toBeLessThan(report.cases / 10);
    for (const code of [
      'DCPX_ERR_BODY_TOO_SHORT',
      'DCPX_ERR_BODY_TOO_LARGE',
      'DCPX_ERR_BAD_EXTRAS',
      'incomplete',
    ])
      expect(report.framer[code] ?? 0, code).toBeGreaterThan(100);
  });

  it('drives every message decoder, both to a decoded message and to a refusal', () => {
    const names = [...messageDecoders().keys()];
    expect(names.length).toBeGreaterThanOrEqual(50);
    for (const name of names) {
      const count = report.decoders[name]!;
      expect(count.accepted, `${name} never decoded a frame`).toBeGreaterThan(20);
      expect(count.rejected + count.wrongMessage, `${name} never refused a frame`).toBeGreaterThan(20);
    }
  });

  it('counts a decoder that throws anything but a ProtocolError as a crash, with the input to replay', () => {
    const decoders = new Map<string, Decode>([
      [
        'decodeOverrun',
        (frame: Frame) => {
          if (frame.opcode === Opcode.DCP_MUTATION)
            return frame.extras.readBigUInt64BE(frame.extrasLength - 4);
          throw new ProtocolError('DCPX_ERR_WRONG_MESSAGE', 'not a mutation');
        },
      ],
    ]);
    const broken = fuzzFrames({ cases: 2_000, seed: 1, corpus, decoders, maxCrashes: 1 });
    expect(broken.crashCount).toBeGreaterThan(0);
    const [crash] = broken.crashes;
    expect(crash).toMatchObject({ where: 'decodeOverrun', error: expect.stringMatching(/^RangeError/) });
    expect(crash!.stack).toMatch(/decodeOverrun|fuzz\.test\.ts/);
    expect(Buffer.from(crash!.input, 'hex').length).toBeGreaterThanOrEqual(24);
  });

  it('counts a decoded message far larger than its frame as a crash (absurd allocation)', () => {
    const decoders = new Map<string, Decode>([['decodeHuge', () => ({ value: Buffer.alloc(1 << 20) })]]);
    const broken = fuzzFrames({ cases: 50, seed: 1, corpus, decoders, maxCrashes: 1 });
    expect(broken.crashCount).toBeGreaterThan(0);
    expect(broken.crashes[0]!.error).toMatch(/decoded \d+ bytes' worth from a frame of \d+/);
  });
});

// Regressions: each one a crash the fuzzer found, as the bytes it found it with.
describe('decoder crashes found by fuzzing stay fixed', () => {
  function refusal(fn: () => unknown): ProtocolError {
    try {
      fn();
    } catch (error) {
      if (error instanceof ProtocolError) return error;
      throw error;
    }
    throw new Error('decoded without an error');
  }

  it('decodeMutationTokenExtras refuses extras that are not 16 bytes with DCPX_ERR_BAD_EXTRAS, not a RangeError', () => {
    // fuzz seed 1, case 11: a QUIT request shrunk to its header; the token decoder read 16 bytes of nothing
    const frame = decodeFrame(Buffer.from('800700000000000000000000a60000010000000000000000', 'hex'));
    const error = refusal(() => decodeMutationTokenExtras(frame.extras));
    expect(error.code).toBe('DCPX_ERR_BAD_EXTRAS');
    expect(error.message).toContain('mutation token extras of 0 bytes, expected 16');
    expect(refusal(() => decodeMutationTokenExtras(Buffer.alloc(15), Opcode.SET)).message).toContain('(SET)');
    expect(decodeMutationTokenExtras(Buffer.alloc(16, 1))).toEqual({
      vbucketUuid: 0x0101_0101_0101_0101n,
      seqno: 0x0101_0101_0101_0101n,
    });
  });

  it('the write and arithmetic response decoders still read a 16-byte mutation token', () => {
    const token = Buffer.concat([
      Buffer.from('00000000000000aa', 'hex'),
      Buffer.from('00000000000000bb', 'hex'),
    ]);
    const write = Buffer.concat([
      Buffer.from('81010000100000000000001000000007000000000000000c', 'hex'),
      token,
    ]);
    expect(decodeWriteResponse(decodeFrame(write)).mutationToken).toEqual({
      vbucketUuid: 0xaan,
      seqno: 0xbbn,
    });
    const counter = Buffer.from('0000000000000005', 'hex');
    const arith = Buffer.concat([
      Buffer.from('81050000100000000000001800000007000000000000000c', 'hex'),
      token,
      counter,
    ]);
    expect(decodeArithmeticResponse(decodeFrame(arith)).mutationToken).toEqual({
      vbucketUuid: 0xaan,
      seqno: 0xbbn,
    });
  });
});
