import { messageSamples } from '../../src/conformance/samples.js';
import { HEADER_LENGTH, Magic } from '../../src/protocol/constants.js';
import { FrameDecoder } from '../../src/protocol/decoder.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import type { Frame } from '../../src/protocol/frame.js';
import * as messages from '../../src/protocol/messages/index.js';

// A mutation fuzzer for the frame decoder and every message decoder (STYLE.md "Fuzz where it bites").
// Random bytes almost always stop at the magic check, so each case starts from a valid frame (the
// conformance catalogue, one sample of every message dcpx encodes, plus random valid frames) and mutates
// it: bit flips, byte changes, truncation, extension, and edits of the header fields the decoders trust
// (magic among the valid ones, opcode, key/extras/body lengths, datatype, status/vBucket), most of them
// with the body length fixed up so the frame still passes the framer and reaches the message decoders.
// The only thing allowed to escape is a ProtocolError; a decoded message may not be absurdly larger than
// the frame it came from.

export type Decode = (frame: Frame) => unknown;

/** Every `decodeX` the messages module exports, called with a frame (adapters for the three that take parts). */
export function messageDecoders(): Map<string, Decode> {
  const decoders = new Map<string, Decode>();
  for (const [name, value] of Object.entries(messages)) {
    if (!name.startsWith('decode') || typeof value !== 'function') continue;
    decoders.set(name, (frame) => (value as (f: Frame) => unknown)(frame));
  }
  // these three decode a part of a frame, not a frame
  decoders.set('decodeMutationTokenExtras', (frame) => messages.decodeMutationTokenExtras(frame.extras));
  decoders.set('decodeFailoverLogValue', (frame) => messages.decodeFailoverLogValue(frame, frame.value));
  decoders.set('decodeRequestFrameInfos', (frame) => messages.decodeRequestFrameInfos(frame.framingExtras));
  return decoders;
}

/**
 * The valid frames mutations start from: one sample of every message dcpx encodes (the conformance
 * catalogue) and `random` valid frames (e.g. from test/helpers/arbitraries.ts), which get a quarter of
 * the cases whatever their number.
 */
export interface Corpus {
  samples: readonly Buffer[];
  random: readonly Buffer[];
}

export function seedCorpus(random: readonly Buffer[] = []): Corpus {
  return { samples: messageSamples().map((s) => s.bytes), random };
}

/** mulberry32: small, fast and seeded, so a crash is reproduced from its seed and case number. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const MAGICS = Object.values(Magic);
const isAlt = (magic: number) => magic === Magic.AltRequest || magic === Magic.AltResponse;

interface Mutator {
  name: string;
  apply(frame: Buffer, r: Random): Buffer;
}

class Random {
  constructor(readonly next: () => number) {}
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
  /** A length near `around` most of the time, anything small otherwise, rarely any u32. */
  length(around: number, max: number): number {
    const roll = this.int(8);
    if (roll === 0) return this.int(max + 1);
    if (roll === 1) return this.int(0x1_0000_0000);
    return Math.max(0, Math.min(max, around + this.int(33) - 16));
  }
}

const bodyLength = (f: Buffer) => (f.length >= HEADER_LENGTH ? f.readUInt32BE(8) : 0);
function setBodyLength(f: Buffer, n: number): void {
  if (f.length >= HEADER_LENGTH) f.writeUInt32BE(n >>> 0, 8);
}
/** Start of the body parts: framing extras, extras, key (by the header as it stands now). */
function layout(f: Buffer): { extras: number; key: number; value: number } {
  const alt = isAlt(f[0]!);
  const framing = alt ? f[2]! : 0;
  const keyLength = alt ? f[3]! : f.readUInt16BE(2);
  const extras = HEADER_LENGTH + framing;
  const key = extras + f[4]!;
  return { extras, key, value: key + keyLength };
}

/** The mutations, each named so the report says which kinds find what. */
export function mutators(opcodes: readonly number[]): Mutator[] {
  return [
    {
      name: 'flip bits',
      apply(f, r) {
        for (let n = 1 + r.int(4); n > 0 && f.length > 0; n--) f[r.int(f.length)]! ^= 1 << r.int(8);
        return f;
      },
    },
    {
      name: 'set bytes',
      apply(f, r) {
        for (let n = 1 + r.int(4); n > 0 && f.length > 0; n--) f[r.int(f.length)] = r.int(256);
        return f;
      },
    },
    {
      name: 'set a header byte',
      apply(f, r) {
        f[r.int(HEADER_LENGTH)] = r.pick([0, 1, 0x7f, 0x80, 0xff, r.int(256)]);
        return f;
      },
    },
    {
      name: 'set body bytes',
      apply(f, r) {
        if (f.length <= HEADER_LENGTH) return f;
        for (let n = 1 + r.int(8); n > 0; n--)
          f[HEADER_LENGTH + r.int(f.length - HEADER_LENGTH)] = r.pick([0, 0xff, r.int(256)]);
        return f;
      },
    },
    { name: 'truncate', apply: (f, r) => f.subarray(0, r.int(f.length)) },
    { name: 'extend (no length fix-up)', apply: (f, r) => Buffer.concat([f, r.bytes(1 + r.int(32))]) },
    {
      name: 'grow the body',
      apply(f, r) {
        const add = r.bytes(1 + r.int(r.int(4) === 0 ? 300 : 24));
        const out = Buffer.concat([f, add]);
        setBodyLength(out, bodyLength(f) + add.length);
        return out;
      },
    },
    {
      name: 'shrink the body',
      apply(f, r) {
        const cut = Math.min(f.length - HEADER_LENGTH, 1 + r.int(24));
        if (cut <= 0) return f;
        const out = f.subarray(0, f.length - cut);
        setBodyLength(out, bodyLength(f) - cut);
        return out;
      },
    },
    {
      name: 'insert body bytes',
      apply(f, r) {
        if (f.length < HEADER_LENGTH) return f;
        const at = HEADER_LENGTH + r.int(f.length - HEADER_LENGTH + 1);
        const add = r.bytes(1 + r.int(16));
        const out = Buffer.concat([f.subarray(0, at), add, f.subarray(at)]);
        setBodyLength(out, bodyLength(f) + add.length);
        return out;
      },
    },
    {
      name: 'delete body bytes',
      apply(f, r) {
        if (f.length <= HEADER_LENGTH) return f;
        const at = HEADER_LENGTH + r.int(f.length - HEADER_LENGTH);
        const cut = Math.min(f.length - at, 1 + r.int(16));
        const out = Buffer.concat([f.subarray(0, at), f.subarray(at + cut)]);
        setBodyLength(out, bodyLength(f) - cut);
        return out;
      },
    },
    {
      name: 'extras length',
      apply(f, r) {
        if (f.length < HEADER_LENGTH) return f;
        f[4] =
          r.int(4) === 0 ? r.int(256) : r.pick([0, 1, 4, 8, 13, 16, 18, 20, 21, 31, 48, f[4]! + 1]) & 0xff;
        return f;
      },
    },
    {
      name: 'extras length, body kept whole',
      apply(f, r) {
        // resize the extras in place so key and value stay as they were
        if (f.length < HEADER_LENGTH) return f;
        const { extras, key } = layout(f);
        if (key > f.length) return f;
        const size = r.pick([0, 1, 4, 8, 13, 16, 18, 20, 21, 31, 48, r.int(64)]);
        const newExtras = Buffer.concat([f.subarray(extras, key), r.bytes(64)]).subarray(0, size);
        const out = Buffer.concat([f.subarray(0, extras), newExtras, f.subarray(key)]);
        out[4] = size;
        setBodyLength(out, bodyLength(f) + size - (key - extras));
        return out;
      },
    },
    {
      name: 'key length',
      apply(f, r) {
        if (f.length < HEADER_LENGTH) return f;
        const { key, value } = layout(f);
        const n = r.length(value - key, Math.max(0, f.length - key + 4));
        if (isAlt(f[0]!)) f[3] = n & 0xff;
        else f.writeUInt16BE(n & 0xffff, 2);
        return f;
      },
    },
    {
      name: 'body length',
      apply(f, r) {
        setBodyLength(f, r.length(bodyLength(f), f.length + 8));
        return f;
      },
    },
    {
      name: 'datatype',
      apply(f, r) {
        if (f.length >= HEADER_LENGTH) f[5] = r.int(2) === 0 ? r.int(8) : r.int(256);
        return f;
      },
    },
    {
      name: 'magic',
      apply(f, r) {
        if (f.length < HEADER_LENGTH) return f;
        const magic = r.pick(MAGICS);
        const { key, value } = layout(f);
        // to or from the alt framing: keep the key where it is (no framing extras) when it fits a byte
        if (isAlt(magic) !== isAlt(f[0]!) && r.int(2) === 0) {
          const keyLength = value - key;
          if (isAlt(magic)) {
            f[2] = 0;
            f[3] = keyLength & 0xff;
          } else f.writeUInt16BE(keyLength & 0xffff, 2);
        }
        f[0] = magic;
        return f;
      },
    },
    {
      name: 'opcode',
      apply(f, r) {
        if (f.length >= 2) f[1] = r.int(8) === 0 ? r.int(256) : r.pick(opcodes);
        return f;
      },
    },
    {
      name: 'status or vBucket',
      apply(f, r) {
        if (f.length >= HEADER_LENGTH) f.writeUInt16BE(r.pick([0, 0, 1, 0x23, 0x86, r.int(0x10000)]), 6);
        return f;
      },
    },
    {
      name: 'framing extras',
      apply(f, r) {
        // the alt framing's framing-extras length (byte 2), with the body length fixed up
        if (f.length < HEADER_LENGTH || !isAlt(f[0]!)) return f;
        const add = r.bytes(r.int(8));
        const out = Buffer.concat([f.subarray(0, HEADER_LENGTH), add, f.subarray(HEADER_LENGTH)]);
        out[2] = (f[2]! + add.length) & 0xff;
        setBodyLength(out, bodyLength(f) + add.length);
        return out;
      },
    },
  ];
}

export interface DecoderCount {
  /** Decoded without error. */
  accepted: number;
  /** Refused with a ProtocolError about the content. */
  rejected: number;
  /** Refused as another message (DCPX_ERR_WRONG_MESSAGE): not its opcode or magic. */
  wrongMessage: number;
}

export interface Crash {
  seed: number;
  caseIndex: number;
  /** 'FrameDecoder' or the message decoder's name. */
  where: string;
  mutations: string[];
  /** The bytes fed to the FrameDecoder (hex). */
  input: string;
  error: string;
  /** The crash's stack, from a replay with stack traces on (decoder crashes). */
  stack: string | undefined;
}

export interface FuzzReport {
  cases: number;
  seed: number;
  /** Frames the FrameDecoder handed out (each went through its message decoders). */
  frames: number;
  /** FrameDecoder outcomes: "frame", "incomplete" or a ProtocolError code. */
  framer: Record<string, number>;
  decoders: Record<string, DecoderCount>;
  mutations: Record<string, number>;
  crashes: Crash[];
  /** Crashes counted past the `maxCrashes` kept. */
  crashCount: number;
  ms: number;
  /** Slowest single case (a decoder that loops shows here). */
  slowestCaseMs: number;
}

export interface FuzzOptions {
  cases: number;
  seed: number;
  corpus: Corpus;
  /** FrameDecoder body limit: the most a case may make the decoder hold (default 64 KiB). */
  maxBodyLength?: number;
  maxCrashes?: number;
  /** The message decoders to run (default: every one, `messageDecoders()`). */
  decoders?: Map<string, Decode>;
  /** Called every `every` cases with the report so far. */
  progress?: { every: number; report(r: FuzzReport): void };
}

/** Rough size of a decoded message: bytes of buffers and strings, 8 per scalar, arrays and objects summed. */
export function footprint(value: unknown, depth = 0): number {
  if (depth > 8) return 8;
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return value.length;
  if (typeof value === 'string') return value.length;
  if (Array.isArray(value)) return value.reduce((n: number, v) => n + 8 + footprint(v, depth + 1), 0);
  if (value !== null && typeof value === 'object')
    return Object.values(value).reduce((n: number, v) => n + 8 + footprint(v, depth + 1), 0);
  return 8;
}

/** Routes each opcode to the decoders that accept some seed frame of that opcode. */
function routes(corpus: Corpus, decoders: Map<string, Decode>): Map<number, [string, Decode][]> {
  const byOpcode = new Map<number, [string, Decode][]>();
  const all = [...decoders];
  for (const bytes of [...corpus.samples, ...corpus.random]) {
    const frames: Frame[] = [];
    new FrameDecoder().push(bytes, (f) => frames.push(f));
    for (const frame of frames) {
      const list = byOpcode.get(frame.opcode) ?? [];
      byOpcode.set(frame.opcode, list);
      for (const [name, decode] of all) {
        if (list.some(([n]) => n === name)) continue;
        try {
          decode(frame);
          list.push([name, decode]);
        } catch (error) {
          if (error instanceof ProtocolError && error.code === 'DCPX_ERR_WRONG_MESSAGE') continue;
          list.push([name, decode]);
        }
      }
    }
  }
  return byOpcode;
}

/**
 * Runs `cases` mutated frames through the FrameDecoder (whole or in two or three chunks, sometimes
 * followed by another valid frame) and every frame it hands out through the message decoders of its
 * opcode (and, one case in 16, through every message decoder).
 */
export function fuzzFrames(options: FuzzOptions): FuzzReport {
  // nearly every case ends in a ProtocolError: capturing their stack traces would take four fifths of the
  // time, so they are off during the run (a crash is replayed with them on, see `stackOf`)
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return run(options, stackTraceLimit);
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
  }
}

/** Replays `fn` with stack traces on and returns the stack of what it throws. */
function stackOf(fn: () => unknown, limit: number): string | undefined {
  const off = Error.stackTraceLimit;
  Error.stackTraceLimit = limit;
  try {
    fn();
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.stack : undefined;
  } finally {
    Error.stackTraceLimit = off;
  }
}

function run(options: FuzzOptions, stackTraceLimit: number): FuzzReport {
  const r = new Random(rng(options.seed));
  const decoders = options.decoders ?? messageDecoders();
  const routed = routes(options.corpus, decoders);
  const everyDecoder = [...decoders];
  const opcodes = [...routed.keys()];
  const mutate = mutators(opcodes);
  const maxBodyLength = options.maxBodyLength ?? 64 * 1024;
  const maxCrashes = options.maxCrashes ?? 20;
  const report: FuzzReport = {
    cases: 0,
    seed: options.seed,
    frames: 0,
    framer: {},
    decoders: Object.fromEntries(
      everyDecoder.map(([name]) => [name, { accepted: 0, rejected: 0, wrongMessage: 0 }]),
    ),
    mutations: Object.fromEntries(mutate.map((m) => [m.name, 0])),
    crashes: [],
    crashCount: 0,
    ms: 0,
    slowestCaseMs: 0,
  };
  const count = (table: Record<string, number>, key: string) => {
    table[key] = (table[key] ?? 0) + 1;
  };
  const { samples, random } = options.corpus;
  const pickSeed = () => (random.length > 0 && r.int(4) === 0 ? r.pick(random) : r.pick(samples));
  const started = performance.now();
  for (let i = 0; i < options.cases; i++) {
    const caseStarted = performance.now();
    let bytes: Buffer = Buffer.from(pickSeed());
    const applied: string[] = [];
    for (let n = 1 + (r.int(3) === 0 ? r.int(3) : 0); n > 0; n--) {
      const m = r.pick(mutate);
      applied.push(m.name);
      count(report.mutations, m.name);
      bytes = m.apply(bytes, r);
    }
    if (r.int(8) === 0) bytes = Buffer.concat([bytes, pickSeed()]);
    const crash = (where: string, error: unknown, replay?: () => unknown) => {
      report.crashCount++;
      if (report.crashes.length < maxCrashes) {
        report.crashes.push({
          seed: options.seed,
          caseIndex: i,
          where,
          mutations: applied,
          input: bytes.toString('hex'),
          error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
          stack: replay ? stackOf(replay, stackTraceLimit) : undefined,
        });
      }
    };
    const frames: Frame[] = [];
    const decoder = new FrameDecoder({ maxBodyLength });
    try {
      let at = 0;
      for (let chunks = 1 + r.int(3); chunks > 0; chunks--) {
        const end = chunks === 1 ? bytes.length : at + r.int(bytes.length - at + 1);
        decoder.push(bytes.subarray(at, end), (f) => frames.push(f));
        at = end;
      }
      count(report.framer, decoder.bufferedBytes > 0 ? 'incomplete' : 'frame');
      if (decoder.bufferedBytes > HEADER_LENGTH + maxBodyLength)
        crash('FrameDecoder', new Error(`holds ${decoder.bufferedBytes} bytes, over its limit`));
    } catch (error) {
      if (error instanceof ProtocolError) count(report.framer, error.code);
      else crash('FrameDecoder', error);
    }
    for (const frame of frames) {
      report.frames++;
      const list = r.int(16) === 0 ? everyDecoder : (routed.get(frame.opcode) ?? []);
      for (const [name, decode] of list) {
        const tally = report.decoders[name]!;
        try {
          const message = decode(frame);
          tally.accepted++;
          const size = footprint(message);
          if (size > 16 * frame.length + 1024)
            crash(name, new Error(`decoded ${size} bytes' worth from a frame of ${frame.length}`));
        } catch (error) {
          if (!(error instanceof ProtocolError)) crash(name, error, () => decode(frame));
          else if (error.code === 'DCPX_ERR_WRONG_MESSAGE') tally.wrongMessage++;
          else tally.rejected++;
        }
      }
    }
    report.cases++;
    report.slowestCaseMs = Math.max(report.slowestCaseMs, performance.now() - caseStarted);
    if (options.progress && report.cases % options.progress.every === 0) {
      report.ms = performance.now() - started;
      options.progress.report(report);
    }
  }
  report.ms = performance.now() - started;
  return report;
}
