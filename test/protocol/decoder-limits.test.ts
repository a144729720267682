import { describe, expect, it } from 'vitest';
import * as p from '../../src/protocol/index.js';

const noop = p.encodeNoop({ opaque: 1 });
const set = p.encodeStore({
  opcode: p.Opcode.SET,
  opaque: 2,
  vbucket: 0,
  cas: 0n,
  datatype: 0,
  flags: 0,
  expiration: 0,
  key: Buffer.from('k'),
  value: Buffer.alloc(1000, 1),
});

function recordingBudget(limit: number) {
  const log: string[] = [];
  let held = 0;
  return {
    log,
    get held() {
      return held;
    },
    acquire(bytes: number) {
      log.push(`acquire ${bytes}`);
      if (held + bytes > limit) return false;
      held += bytes;
      return true;
    },
    release(bytes: number) {
      log.push(`release ${bytes}`);
      held -= bytes;
    },
  };
}

describe('FrameDecoder limits', () => {
  it('takes a lower body limit between frames and refuses the next frame over it', () => {
    const decoder = new p.FrameDecoder();
    const frames: p.Frame[] = [];
    decoder.push(set, (f) => frames.push(f));
    decoder.maxBodyLength = 100;
    decoder.push(noop, (f) => frames.push(f));
    expect(frames.length).toBe(2);
    expect(() => decoder.push(set, () => {})).toThrow(
      expect.objectContaining({ code: 'DCPX_ERR_BODY_TOO_LARGE' }),
    );
  });

  it('accounts a split frame at its whole size from its header on, and gives it back once complete', () => {
    for (const cut of [10, 24, 30, set.length - 1]) {
      const budget = recordingBudget(1 << 20);
      const decoder = new p.FrameDecoder({ budget });
      const frames: p.Frame[] = [];
      decoder.push(set.subarray(0, cut), (f) => frames.push(f));
      expect(budget.held).toBe(cut < 24 ? 0 : set.length);
      expect(decoder.unfinishedBytes).toBe(cut < 24 ? cut : set.length);
      decoder.push(set.subarray(cut), (f) => frames.push(f));
      expect(frames.map((f) => f.bytes.equals(set))).toEqual([true]);
      expect(budget.log).toEqual([`acquire ${set.length}`, `release ${set.length}`]);
      expect(budget.held).toBe(0);
    }
  });

  it('fails with FrameBudgetError when the budget refuses, and releases on dispose', () => {
    const refusing = recordingBudget(100);
    const decoder = new p.FrameDecoder({ budget: refusing });
    expect(() => decoder.push(set.subarray(0, 30), () => {})).toThrow(p.FrameBudgetError);
    expect(refusing.held).toBe(0);
    const budget = recordingBudget(1 << 20);
    const other = new p.FrameDecoder({ budget });
    other.push(set.subarray(0, 30), () => {});
    other.dispose();
    expect(budget.held).toBe(0);
  });
});
