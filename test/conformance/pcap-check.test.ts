import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect } from 'vitest';
import { type Segment, tcpConversationPcap } from '../../src/conformance/pcap.js';
import { checkCapture } from '../../src/conformance/pcap-check.js';
import type { TracedFrame } from '../../src/conformance/rules.js';
import { findTshark } from '../../src/conformance/tshark.js';
import { buildConversation, editFrame, renumber } from '../helpers/dcp-conversation.js';
import { findTool, requireTool } from '../helpers/tools.js';

// `dcpx conform --pcap` on captures of conversations with one fault each: tshark reads the file, and
// the report fails exactly the rule the fault breaks.

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-pcap-check-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const PORT = 11_400;
let files = 0;

/** A capture of `frames`, the consumer as the TCP client; `perSegment` frames share one TCP segment. */
function capture(
  frames: readonly TracedFrame[],
  options: { perSegment?: number; maxPayload?: number } = {},
): string {
  const segments: Segment[] = [];
  for (const t of frames) {
    const from = t.from === 'consumer' ? 'client' : 'server';
    const last = segments.at(-1);
    if (last && last.from === from && (options.perSegment ?? 1) > 1 && last.data.length < 4000) {
      last.data = Buffer.concat([last.data, t.frame.bytes]);
    } else {
      segments.push({ from, data: Buffer.from(t.frame.bytes) });
    }
  }
  const file = path.join(dir, `c${++files}.pcap`);
  fs.writeFileSync(
    file,
    tcpConversationPcap(segments, { serverPort: PORT, maxPayload: options.maxPayload }).bytes,
  );
  return file;
}

const failing = async (file: string, tshark: string) =>
  (await checkCapture(file, { tshark, ports: [PORT] })).results
    .filter((r) => r.outcome === 'fail')
    .map((r) => r.id);

const base = (window = 600) =>
  buildConversation({
    window,
    valueBytes: 60,
    streams: [
      { vb: 0, snapshots: [3, 2], close: false },
      { vb: 1, snapshots: [4], close: true },
      { vb: 0, snapshots: [2, 2], close: false },
    ],
  });

const withTshark = requireTool('tshark', findTshark());

describe('dcpx conform --pcap', () => {
  withTshark(
    'finds nothing wrong in a well-formed capture, whole or split across packets',
    async (tshark) => {
      const { frames } = base();
      expect(await failing(capture(frames), tshark)).toEqual([]);
      expect(await failing(capture(frames, { perSegment: 8 }), tshark)).toEqual([]);
      expect(await failing(capture(frames, { maxPayload: 17 }), tshark)).toEqual([]);
      const report = await checkCapture(capture(frames), { tshark, ports: [PORT] });
      expect(report.summary).toMatchObject({ connections: 1, streams: 3, items: 13 });
    },
  );

  withTshark('reports a reused stream opaque', async (tshark) => {
    const built = base();
    const [a, , c] = built.streams;
    const frames = built.frames.map((t, i) =>
      i === c!.request || (i > c!.request && t.from === 'producer' && t.frame.opaque === c!.opaque)
        ? editFrame(t, (b) => b.writeUInt32BE(a!.opaque, 12))
        : t,
    );
    expect(await failing(capture(frames), tshark)).toEqual(['stream-opaque-reuse']);
  });

  withTshark('reports frames for a closed stream', async (tshark) => {
    const built = base(0);
    const b = built.streams[1]!;
    const frames = renumber([
      ...built.frames.slice(0, b.end + 1),
      built.frames[b.items[0]!]!,
      ...built.frames.slice(b.end + 1),
    ]);
    expect(await failing(capture(frames), tshark)).toEqual(['closed-stream-frames']);
  });

  withTshark('reports an item outside its marker range', async (tshark) => {
    const built = base();
    const at = built.streams[0]!.markers[0]!;
    const frames = [...built.frames];
    frames[at] = editFrame(frames[at]!, (b) => b.writeBigUInt64BE(2n, 24 + 8));
    expect(await failing(capture(frames), tshark)).toEqual(['marker-range']);
  });

  withTshark('reports seqnos out of order', async (tshark) => {
    const built = buildConversation({ window: 0, streams: [{ vb: 0, snapshots: [4], close: false }] });
    const [i1, i2] = built.streams[0]!.items.slice(1, 3);
    const frames = [...built.frames];
    [frames[i1!], frames[i2!]] = [frames[i2!]!, frames[i1!]!];
    expect(await failing(capture(renumber(frames)), tshark)).toEqual(['seqno-order']);
  });

  withTshark('reports a window overrun', async (tshark) => {
    const frames = renumber(base().frames.filter((t) => t.frame.opcode !== 0x5d));
    expect(await failing(capture(frames), tshark)).toEqual(['flow-control-window']);
  });

  requireTool('editcap', findTool('editcap'))('reads pcapng as well', async (editcap) => {
    const tshark = findTshark();
    if (!tshark) return;
    const built = base();
    const frames = renumber(built.frames.filter((t) => t.frame.opcode !== 0x5d));
    const pcap = capture(frames);
    const pcapng = `${pcap}ng`;
    execFileSync(editcap, ['-F', 'pcapng', pcap, pcapng]);
    expect(await failing(pcapng, tshark)).toEqual(['flow-control-window']);
  });
});
