import { encodeMutation, type Frame, FrameDecoder } from '../src/protocol/index.js';
import { type BenchRow, compare, spread } from './lib.js';

// Decoder throughput on a stream of mutations cut into 64 KiB socket-sized chunks, beside a baseline
// that only copies the same chunks (what any byte-moving process must at least pay).

const CHUNK = 64 * 1024;

function mutationStream(
  valueSize: number,
  totalBytes: number,
): { chunks: Buffer[]; frames: number; bytes: number } {
  const frames: Buffer[] = [];
  let bytes = 0;
  for (let seqno = 1n; bytes < totalBytes; seqno++) {
    const frame = encodeMutation({
      opaque: 0x1234,
      vbucket: Number(seqno % 1024n),
      cas: seqno << 16n,
      datatype: 0,
      bySeqno: seqno,
      revSeqno: 1n,
      flags: 0,
      expiration: 0,
      lockTime: 0,
      nru: 0,
      key: Buffer.from(`key-${seqno}`),
      value: Buffer.alloc(valueSize, 0x61),
    });
    frames.push(frame);
    bytes += frame.length;
  }
  const stream = Buffer.concat(frames);
  const chunks: Buffer[] = [];
  for (let at = 0; at < stream.length; at += CHUNK) chunks.push(stream.subarray(at, at + CHUNK));
  return { chunks, frames: frames.length, bytes: stream.length };
}

export async function benchDecode(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const [label, valueSize, target] of [
    ['100 B mutations', 100, 'frames'],
    ['4 KiB mutations', 4096, 'copy'],
  ] as const) {
    const { chunks, frames, bytes } = mutationStream(valueSize, 64 * 1024 * 1024);
    const sink = Buffer.allocUnsafe(CHUNK);
    let seen = 0;
    const [decode, decodeViews, copy] = await compare(
      [
        {
          // header fields parsed; key/value views left to the consumer (a forwarding proxy needs none)
          name: 'decode',
          unit: 'B/s',
          fn: () => {
            const decoder = new FrameDecoder();
            let count = 0;
            const onFrame = (f: Frame) => {
              count += f.opcode === 0x57 ? 1 : 0;
            };
            for (const chunk of chunks) decoder.push(chunk, onFrame);
            seen = count;
            return bytes;
          },
        },
        {
          // also materialises the key and value views a consumer applies
          name: 'decode+views',
          unit: 'B/s',
          fn: () => {
            const decoder = new FrameDecoder();
            let total = 0;
            const onFrame = (f: Frame) => {
              total += f.key.length + f.value.length;
            };
            for (const chunk of chunks) decoder.push(chunk, onFrame);
            return total > 0 ? bytes : 0;
          },
        },
        {
          name: 'copy',
          unit: 'B/s',
          fn: () => {
            for (const chunk of chunks) chunk.copy(sink);
            return bytes;
          },
        },
      ],
      { warmup: 2, rounds: 7 },
    );
    if (seen !== frames) throw new Error(`decoded ${seen} frames, expected ${frames}`);
    const framesPerSecond = (decode!.median / bytes) * frames;
    const ratio = decode!.median / copy!.median;
    rows.push({
      scenario: `decode ${label}`,
      metric: 'frames/s',
      value: framesPerSecond,
      unit: '',
      target: target === 'frames' ? '≥ 3 M' : undefined,
      met: target === 'frames' ? framesPerSecond >= 3e6 : undefined,
    });
    rows.push({
      scenario: `decode ${label}`,
      metric: 'decode',
      value: decode!.median / 1e6,
      unit: 'MB/s',
      spread: spread(decode!),
    });
    rows.push({
      scenario: `decode ${label}`,
      metric: 'frames/s with key+value views',
      value: (decodeViews!.median / bytes) * frames,
      unit: '',
    });
    rows.push({
      scenario: `decode ${label}`,
      metric: 'copy baseline',
      value: copy!.median / 1e6,
      unit: 'MB/s',
      spread: spread(copy!),
    });
    rows.push({
      scenario: `decode ${label}`,
      metric: 'decode / copy',
      value: ratio,
      unit: 'ratio',
      target: target === 'copy' ? '≥ 0.5' : undefined,
      met: target === 'copy' ? ratio >= 0.5 : undefined,
    });
  }
  return rows;
}
