import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as p from '../../src/protocol/index.js';
import { bytes, nonEmptyBytes, u8, u16, u32, u64 } from '../helpers/arbitraries.js';
import { golden } from '../helpers/golden.js';

// KV/control codecs (src/protocol/messages/kv-*.ts), checked against kv_engine docs/BinaryProtocol.md
// and docs/sasl.md.

const req = { opaque: u32, vbucket: u16 };
const key = nonEmptyBytes(40);
const success = fc.constant(p.Status.Success);
const errorStatus = fc.constantFrom(
  p.Status.KeyEnoent,
  p.Status.KeyEexists,
  p.Status.NotStored,
  p.Status.NotMyVbucket,
  p.Status.Etmpfail,
  0xff01, // proxy range
);
/** Text carried one byte per char: every latin1 char, so any byte value is exercised. */
const latin1 = (maxLength = 40) =>
  fc.string({ unit: fc.integer({ min: 0, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength });
const nonEmptyLatin1 = (maxLength = 40) =>
  fc.string({
    unit: fc.integer({ min: 0, max: 0xff }).map((c) => String.fromCharCode(c)),
    minLength: 1,
    maxLength,
  });
const mutationToken = fc.record({ vbucketUuid: u64, seqno: u64 });
const vbucketState = fc.constantFrom(1, 2, 3, 4) as fc.Arbitrary<p.VBucketState>;
const storeOpcode = fc.constantFrom(...p.STORE_OPCODES);
const writeOpcode = fc.constantFrom(...p.WRITE_OPCODES);
const arithmeticOpcode = fc.constantFrom(...p.ARITHMETIC_OPCODES);

interface Case<T> {
  name: string;
  arb: fc.Arbitrary<T>;
  encode(m: T): Buffer;
  decode(f: p.Frame): T;
}
const cases: Case<never>[] = [];
function roundTrip<T>(
  name: string,
  arb: fc.Arbitrary<T>,
  encode: (m: T) => Buffer,
  decode: (f: p.Frame) => T,
): void {
  cases.push({ name, arb, encode, decode } as unknown as Case<never>);
}

// kv-get.ts
roundTrip(
  'GET/GETQ/GETK/GETKQ request',
  fc.record({ opcode: fc.constantFrom(...p.GET_OPCODES), ...req, key }),
  p.encodeGet,
  p.decodeGet,
);
roundTrip(
  'GET family success response',
  fc.record({
    opcode: fc.constantFrom(...p.GET_OPCODES),
    opaque: u32,
    status: success,
    cas: u64,
    datatype: u8,
    flags: u32,
    key: bytes(40),
    value: bytes(500),
  }),
  p.encodeGetResponse,
  p.decodeGetResponse,
);
roundTrip(
  'GET family error response',
  fc.record({
    opcode: fc.constantFrom(...p.GET_OPCODES),
    opaque: u32,
    status: errorStatus,
    cas: u64,
    datatype: u8,
    key: bytes(40),
    value: bytes(),
  }),
  p.encodeGetResponse,
  p.decodeGetResponse,
);

// kv-store.ts
roundTrip(
  'SET/ADD/REPLACE (and quiet) request',
  fc.record({
    opcode: storeOpcode,
    ...req,
    cas: u64,
    datatype: u8,
    flags: u32,
    expiration: u32,
    key,
    value: bytes(500),
  }),
  p.encodeStore,
  p.decodeStore,
);
roundTrip(
  'write response (store/delete/append) without a mutation token',
  fc.record({
    opcode: writeOpcode,
    opaque: u32,
    status: fc.oneof(success, errorStatus),
    cas: u64,
    datatype: u8,
    value: bytes(),
  }),
  p.encodeWriteResponse,
  p.decodeWriteResponse,
);
roundTrip(
  'write response with a MutationSeqno token',
  fc.record({
    opcode: writeOpcode,
    opaque: u32,
    status: success,
    cas: u64,
    datatype: u8,
    mutationToken,
    value: bytes(),
  }),
  p.encodeWriteResponse,
  p.decodeWriteResponse,
);

// kv-delete.ts
roundTrip(
  'DELETE/DELETEQ request',
  fc.record({ opcode: fc.constantFrom(...p.DELETE_OPCODES), ...req, cas: u64, key }),
  p.encodeDelete,
  p.decodeDelete,
);

// kv-arithmetic.ts
roundTrip(
  'INCREMENT/DECREMENT (and quiet) request',
  fc.record({ opcode: arithmeticOpcode, ...req, delta: u64, initial: u64, expiration: u32, key }),
  p.encodeArithmetic,
  p.decodeArithmetic,
);
roundTrip(
  'INCREMENT/DECREMENT success response',
  fc.record(
    {
      opcode: arithmeticOpcode,
      opaque: u32,
      status: success,
      cas: u64,
      datatype: u8,
      counter: u64,
      mutationToken,
    },
    { requiredKeys: ['opcode', 'opaque', 'status', 'cas', 'datatype', 'counter'] },
  ),
  p.encodeArithmeticResponse,
  p.decodeArithmeticResponse,
);
roundTrip(
  'INCREMENT/DECREMENT error response',
  fc.record({
    opcode: arithmeticOpcode,
    opaque: u32,
    status: errorStatus,
    cas: u64,
    datatype: u8,
    value: bytes(),
  }),
  p.encodeArithmeticResponse,
  p.decodeArithmeticResponse,
);

// kv-append.ts
roundTrip(
  'APPEND/PREPEND (and quiet) request',
  fc.record({
    opcode: fc.constantFrom(...p.APPEND_OPCODES),
    ...req,
    cas: u64,
    datatype: u8,
    key,
    value: bytes(200),
  }),
  p.encodeAppend,
  p.decodeAppend,
);

// kv-simple.ts
roundTrip(
  'QUIT/QUITQ request',
  fc.record({ opcode: fc.constantFrom(...p.QUIT_OPCODES), opaque: u32 }),
  p.encodeQuit,
  p.decodeQuit,
);
roundTrip('NOOP request', fc.record({ opaque: u32 }), p.encodeNoop, p.decodeNoop);
roundTrip('VERSION request', fc.record({ opaque: u32 }), p.encodeVersion, p.decodeVersion);
roundTrip(
  'VERSION success response',
  fc.record({ opaque: u32, status: success, version: latin1() }),
  p.encodeVersionResponse,
  p.decodeVersionResponse,
);
roundTrip(
  'VERSION error response',
  fc.record({ opaque: u32, status: errorStatus, value: bytes() }),
  p.encodeVersionResponse,
  p.decodeVersionResponse,
);
roundTrip(
  'FLUSH/FLUSHQ request with or without the optional expiration extras',
  fc.record(
    { opcode: fc.constantFrom(...p.FLUSH_OPCODES), opaque: u32, expiration: u32 },
    { requiredKeys: ['opcode', 'opaque'] },
  ),
  p.encodeFlush,
  p.decodeFlush,
);
roundTrip(
  'status-only response to a KV/control command',
  fc.record({
    opcode: fc.constantFrom(
      p.Opcode.QUIT,
      p.Opcode.NOOP,
      p.Opcode.FLUSH,
      p.Opcode.FLUSHQ,
      p.Opcode.SET_VBUCKET,
      p.Opcode.DEL_VBUCKET,
    ),
    opaque: u32,
    status: fc.oneof(success, errorStatus),
    cas: u64,
    datatype: u8,
    value: bytes(),
  }),
  p.encodeStatusResponse,
  (f) => p.decodeStatusResponse(f),
);

// kv-stat.ts
roundTrip(
  'STAT request with an optional group and optional JSON arguments',
  fc.record({ opaque: u32, group: nonEmptyLatin1(), value: nonEmptyBytes() }, { requiredKeys: ['opaque'] }),
  p.encodeStat,
  p.decodeStat,
);
roundTrip(
  'STAT response (one stat, the terminator, or an error)',
  fc.record({ opaque: u32, status: fc.oneof(success, errorStatus), key: latin1(), value: latin1(200) }),
  p.encodeStatResponse,
  p.decodeStatResponse,
);

// kv-hello.ts
roundTrip(
  'HELLO request',
  fc.record({
    opaque: u32,
    agent: fc.string({ unit: 'grapheme', maxLength: 30 }),
    features: fc.array(u16, { maxLength: 40 }),
  }),
  p.encodeHello,
  p.decodeHello,
);
roundTrip(
  'HELLO success response',
  fc.record({ opaque: u32, status: success, features: fc.array(u16, { maxLength: 40 }) }),
  p.encodeHelloResponse,
  p.decodeHelloResponse,
);
roundTrip(
  'HELLO error response',
  fc.record({ opaque: u32, status: errorStatus, value: bytes() }),
  p.encodeHelloResponse,
  p.decodeHelloResponse,
);

// kv-sasl.ts
roundTrip(
  'SASL_LIST_MECHS request',
  fc.record({ opaque: u32 }),
  p.encodeSaslListMechs,
  p.decodeSaslListMechs,
);
roundTrip(
  'SASL_LIST_MECHS success response',
  fc.record({
    opaque: u32,
    status: success,
    mechanisms: fc.array(fc.stringMatching(/^[A-Z0-9_-]{1,20}$/), { maxLength: 6 }),
  }),
  p.encodeSaslListMechsResponse,
  p.decodeSaslListMechsResponse,
);
roundTrip(
  'SASL_LIST_MECHS error response',
  fc.record({ opaque: u32, status: fc.constantFrom(p.Status.NotSupported, p.Status.Einval), value: bytes() }),
  p.encodeSaslListMechsResponse,
  p.decodeSaslListMechsResponse,
);
roundTrip(
  'SASL_AUTH/SASL_STEP request',
  fc.record({
    opcode: fc.constantFrom(...p.SASL_AUTH_OPCODES),
    opaque: u32,
    mechanism: nonEmptyLatin1(20),
    data: bytes(200),
  }),
  p.encodeSaslAuth,
  p.decodeSaslAuth,
);
roundTrip(
  'SASL_AUTH/SASL_STEP response (success, continue or refused)',
  fc.record({
    opcode: fc.constantFrom(...p.SASL_AUTH_OPCODES),
    opaque: u32,
    status: fc.constantFrom(p.Status.Success, p.Status.AuthContinue, p.Status.AuthError, p.Status.Etmpfail),
    data: bytes(200),
  }),
  p.encodeSaslAuthResponse,
  p.decodeSaslAuthResponse,
);

// kv-vbucket.ts
roundTrip(
  'SET_VBUCKET in the 1-byte form, without a value',
  fc.record({ ...req, state: vbucketState, extrasForm: fc.constant(1 as const) }),
  p.encodeSetVBucket,
  p.decodeSetVBucket,
);
roundTrip(
  'SET_VBUCKET in the 1-byte form with a JSON value',
  fc.record({ ...req, state: vbucketState, value: nonEmptyBytes(), extrasForm: fc.constant(1 as const) }),
  p.encodeSetVBucket,
  p.decodeSetVBucket,
);
roundTrip(
  'SET_VBUCKET in the pre-6.5 forms (4-byte extras, or state in the value)',
  fc.record({ ...req, state: vbucketState, extrasForm: fc.constantFrom(0 as const, 4 as const) }),
  p.encodeSetVBucket,
  p.decodeSetVBucket,
);
roundTrip('GET_VBUCKET request', fc.record(req), p.encodeGetVBucket, p.decodeGetVBucket);
roundTrip(
  'GET_VBUCKET success response',
  fc.record({ opaque: u32, status: success, state: vbucketState }),
  p.encodeGetVBucketResponse,
  p.decodeGetVBucketResponse,
);
roundTrip(
  'GET_VBUCKET error response',
  fc.record({ opaque: u32, status: errorStatus, value: bytes() }),
  p.encodeGetVBucketResponse,
  p.decodeGetVBucketResponse,
);
roundTrip(
  'DEL_VBUCKET request with an optional value',
  fc.record({ ...req, value: nonEmptyBytes() }, { requiredKeys: ['opaque', 'vbucket'] }),
  p.encodeDelVBucket,
  p.decodeDelVBucket,
);

describe('KV message codecs round-trip (fast-check)', () => {
  for (const c of cases) {
    it(`${c.name}: decode(encode(m)) equals m and re-encodes to the same bytes`, () => {
      fc.assert(
        fc.property(c.arb, (message) => {
          const wire = c.encode(message);
          const decoded = c.decode(p.decodeFrame(wire));
          expect(decoded).toEqual(message);
          expect(c.encode(decoded).equals(wire)).toBe(true);
        }),
        { numRuns: 200 },
      );
    });
  }
});

describe('golden KV frames (kv_engine docs/BinaryProtocol.md examples)', () => {
  golden(
    'GET request for "Hello"',
    { opcode: p.Opcode.GET, opaque: 0, vbucket: 0, key: Buffer.from('Hello') },
    `80 00 0005   // request, GET, key length 5
     00 00 0000   // no extras, raw, vbucket 0
     00000005     // body = key
     00000000     // opaque
     0000000000000000
     48656c6c6f   // "Hello"`,
    { encode: p.encodeGet, decode: p.decodeGet },
  );
  golden(
    'GET miss answered with "Not found"',
    {
      opcode: p.Opcode.GET,
      opaque: 0,
      status: p.Status.KeyEnoent,
      cas: 0n,
      datatype: 0,
      key: Buffer.alloc(0),
      value: Buffer.from('Not found'),
    },
    `81 00 0000   // response, GET, no key
     00 00 0001   // no extras, raw, status KeyEnoent
     00000009     // body = 9 bytes of text
     00000000     // opaque
     0000000000000000
     4e6f7420666f756e64 // "Not found"`,
    { encode: p.encodeGetResponse, decode: p.decodeGetResponse },
  );
  golden(
    'SASL_LIST_MECHS response offering SCRAM-SHA1, CRAM-MD5 and PLAIN',
    { opaque: 0, status: p.Status.Success, mechanisms: ['SCRAM-SHA1', 'CRAM-MD5', 'PLAIN'] },
    `81 20 0000   // response, SASL_LIST_MECHS
     00 00 0000   // no extras, raw, success
     00000019     // body = 25 bytes of text
     00000000
     0000000000000000
     534352414d2d53484131 20 4352414d2d4d4435 20 504c41494e // "SCRAM-SHA1 CRAM-MD5 PLAIN"`,
    { encode: p.encodeSaslListMechsResponse, decode: p.decodeSaslListMechsResponse },
  );
  golden(
    'HELLO from agent "mchello v1.0" asking for TCPNODELAY and XATTR',
    { opaque: 1, agent: 'mchello v1.0', features: [p.HelloFeature.TcpNoDelay, p.HelloFeature.Xattr] },
    `80 1f 000c   // request, HELLO, key length 12
     00 00 0000
     00000010     // body = 12 key + 4 value
     00000001     // opaque
     0000000000000000
     6d6368656c6c6f2076312e30 // "mchello v1.0"
     0003 0006    // TcpNoDelay, Xattr`,
    { encode: p.encodeHello, decode: p.decodeHello },
  );
  golden(
    'INCREMENT "counter" by 1 from 0, expiring in two hours',
    {
      opcode: p.Opcode.INCREMENT,
      opaque: 0,
      vbucket: 0,
      delta: 1n,
      initial: 0n,
      expiration: 7200,
      key: Buffer.from('counter'),
    },
    `80 05 0007   // request, INCREMENT, key length 7
     14 00 0000   // extras 20
     0000001b     // body = 20 + 7
     00000000
     0000000000000000
     0000000000000001 // delta
     0000000000000000 // initial
     00001c20         // expiration 7200
     636f756e746572   // "counter"`,
    { encode: p.encodeArithmetic, decode: p.decodeArithmetic },
  );
  golden(
    'SET_VBUCKET 5 to replica in the kv_engine 1-byte form',
    { opaque: 7, vbucket: 5, state: p.VBucketState.Replica, extrasForm: 1 },
    `80 3d 0000   // request, SET_VBUCKET
     01 00 0005   // extras 1, raw, vbucket 5
     00000001
     00000007
     0000000000000000
     02           // replica`,
    { encode: p.encodeSetVBucket, decode: p.decodeSetVBucket },
  );
});

/** Expects `fn` to throw a ProtocolError with this code. */
function expectCode(fn: () => unknown, code: p.ProtocolErrorCode): void {
  expect(fn).toThrow(p.ProtocolError);
  expect(fn).toThrow(expect.objectContaining({ code }));
}

const frame = (spec: p.FrameSpec): p.Frame => p.decodeFrame(p.encodeFrame(spec));
/** A frame read without the stream decoder's extras check, to reach the codec's own checks. */
const rawFrame = (spec: p.FrameSpec): p.Frame => new p.Frame(p.encodeFrame(spec), 0);

describe('KV codecs refuse frames of another opcode with DCPX_ERR_WRONG_MESSAGE', () => {
  const getRequest = frame({ opcode: p.Opcode.GET, key: 'k' });
  const setRequest = frame({ opcode: p.Opcode.SET, extras: Buffer.alloc(8), key: 'k' });
  const noopRequest = frame({ opcode: p.Opcode.NOOP });
  const getResponse = frame({ opcode: p.Opcode.GET, status: p.Status.KeyEnoent });
  const wrong: [string, (f: p.Frame) => unknown, p.Frame][] = [
    ['decodeGet given a SET request', p.decodeGet, setRequest],
    ['decodeGet given a GET response', p.decodeGet, getResponse],
    [
      'decodeGetResponse given a SET response',
      p.decodeGetResponse,
      frame({ opcode: p.Opcode.SET, status: 1 }),
    ],
    ['decodeGetResponse given a GET request', p.decodeGetResponse, getRequest],
    ['decodeStore given a GET request', p.decodeStore, getRequest],
    ['decodeStore given an APPEND request', p.decodeStore, frame({ opcode: p.Opcode.APPEND, key: 'k' })],
    ['decodeWriteResponse given a GET response', p.decodeWriteResponse, getResponse],
    [
      'decodeWriteResponse given an INCREMENT response',
      p.decodeWriteResponse,
      frame({ opcode: p.Opcode.INCREMENT, status: 1 }),
    ],
    ['decodeDelete given a GET request', p.decodeDelete, getRequest],
    [
      'decodeArithmetic given a DELETE request',
      p.decodeArithmetic,
      frame({ opcode: p.Opcode.DELETE, key: 'k' }),
    ],
    [
      'decodeArithmeticResponse given a SET response',
      p.decodeArithmeticResponse,
      frame({ opcode: p.Opcode.SET, status: 1 }),
    ],
    ['decodeAppend given a SET request', p.decodeAppend, setRequest],
    ['decodeQuit given a NOOP request', p.decodeQuit, noopRequest],
    ['decodeNoop given a DCP_NOOP request', p.decodeNoop, frame({ opcode: p.Opcode.DCP_NOOP })],
    ['decodeVersion given a NOOP request', p.decodeVersion, noopRequest],
    [
      'decodeVersionResponse given a NOOP response',
      p.decodeVersionResponse,
      frame({ opcode: p.Opcode.NOOP, status: 0 }),
    ],
    ['decodeFlush given a DCP_FLUSH request', p.decodeFlush, frame({ opcode: p.Opcode.DCP_FLUSH })],
    ['decodeStat given a NOOP request', p.decodeStat, noopRequest],
    [
      'decodeStatResponse given a VERSION response',
      p.decodeStatResponse,
      frame({ opcode: p.Opcode.VERSION, status: 0 }),
    ],
    ['decodeHello given a NOOP request', p.decodeHello, noopRequest],
    ['decodeHelloResponse given a HELLO request', p.decodeHelloResponse, frame({ opcode: p.Opcode.HELLO })],
    [
      'decodeSaslListMechs given a SASL_AUTH request',
      p.decodeSaslListMechs,
      frame({ opcode: p.Opcode.SASL_AUTH, key: 'PLAIN' }),
    ],
    [
      'decodeSaslListMechsResponse given a SASL_AUTH response',
      p.decodeSaslListMechsResponse,
      frame({ opcode: p.Opcode.SASL_AUTH, status: 0 }),
    ],
    [
      'decodeSaslAuth given a SASL_LIST_MECHS request',
      p.decodeSaslAuth,
      frame({ opcode: p.Opcode.SASL_LIST_MECHS }),
    ],
    [
      'decodeSaslAuthResponse given a SASL_LIST_MECHS response',
      p.decodeSaslAuthResponse,
      frame({ opcode: p.Opcode.SASL_LIST_MECHS, status: 0 }),
    ],
    [
      'decodeSetVBucket given a DCP_SET_VBUCKET_STATE request',
      p.decodeSetVBucket,
      frame({ opcode: p.Opcode.DCP_SET_VBUCKET_STATE, extras: Buffer.from([1]) }),
    ],
    [
      'decodeGetVBucket given a DEL_VBUCKET request',
      p.decodeGetVBucket,
      frame({ opcode: p.Opcode.DEL_VBUCKET }),
    ],
    [
      'decodeGetVBucketResponse given a SET_VBUCKET response',
      p.decodeGetVBucketResponse,
      frame({ opcode: p.Opcode.SET_VBUCKET, status: 0 }),
    ],
    [
      'decodeDelVBucket given a GET_VBUCKET request',
      p.decodeDelVBucket,
      frame({ opcode: p.Opcode.GET_VBUCKET }),
    ],
  ];
  for (const [name, decode, f] of wrong) {
    it(`refuses: ${name}`, () => {
      expectCode(() => decode(f), 'DCPX_ERR_WRONG_MESSAGE');
    });
  }

  it('names the whole family in the error, so the reader sees which opcodes were expected', () => {
    expect(() => p.decodeStore(getRequest)).toThrow(
      /expected a SET\/SETQ\/ADD\/ADDQ\/REPLACE\/REPLACEQ request, got .* GET/,
    );
  });

  it('refuses to encode with an opcode outside the family, naming the opcode', () => {
    const store = {
      opcode: p.Opcode.GET,
      opaque: 1,
      vbucket: 0,
      cas: 0n,
      datatype: 0,
      flags: 0,
      expiration: 0,
      key: Buffer.from('k'),
      value: Buffer.alloc(0),
    };
    expectCode(() => p.encodeStore(store as unknown as p.StoreRequest), 'DCPX_ERR_BAD_FIELD');
    expect(() => p.encodeStore(store as unknown as p.StoreRequest)).toThrow(/opcode GET is not one of SET/);
  });
});

describe('KV codecs refuse extras of the wrong size', () => {
  it('the stream decoder refuses a SET request with 4 bytes of extras instead of 8', () => {
    const bytes = p.encodeFrame({ opcode: p.Opcode.SET, extras: Buffer.alloc(4), key: 'k' });
    expectCode(() => p.decodeFrame(bytes), 'DCPX_ERR_BAD_EXTRAS');
  });

  it('decodeStore itself refuses 4 bytes of extras when handed a frame the stream decoder did not check', () => {
    expectCode(
      () => p.decodeStore(rawFrame({ opcode: p.Opcode.SET, extras: Buffer.alloc(4), key: 'k' })),
      'DCPX_ERR_BAD_EXTRAS',
    );
  });

  it('decodeArithmetic refuses extras that are not 20 bytes', () => {
    expectCode(
      () => p.decodeArithmetic(rawFrame({ opcode: p.Opcode.INCREMENT, extras: Buffer.alloc(16), key: 'k' })),
      'DCPX_ERR_BAD_EXTRAS',
    );
  });

  it('refuses a successful GET response without its 4 bytes of flags', () => {
    const bytes = p.encodeFrame({ opcode: p.Opcode.GETK, status: 0, key: 'k', value: 'v' });
    expectCode(() => p.decodeFrame(bytes), 'DCPX_ERR_BAD_EXTRAS');
    expectCode(() => p.decodeGetResponse(new p.Frame(bytes, 0)), 'DCPX_ERR_BAD_EXTRAS');
  });

  it('accepts a 16-byte mutation token on a successful SET response but refuses 8 bytes', () => {
    const token = p.encodeFrame({ opcode: p.Opcode.SET, status: 0, extras: Buffer.alloc(16, 1) });
    expect(p.decodeWriteResponse(p.decodeFrame(token)).mutationToken).toEqual({
      vbucketUuid: 0x0101010101010101n,
      seqno: 0x0101010101010101n,
    });
    expectCode(
      () => p.decodeFrame(p.encodeFrame({ opcode: p.Opcode.SET, status: 0, extras: Buffer.alloc(8) })),
      'DCPX_ERR_BAD_EXTRAS',
    );
  });

  it('refuses a mutation token on an error response', () => {
    expectCode(
      () =>
        p.decodeWriteResponse(
          frame({ opcode: p.Opcode.DELETE, status: p.Status.KeyEnoent, extras: Buffer.alloc(16) }),
        ),
      'DCPX_ERR_BAD_EXTRAS',
    );
  });

  it('refuses a FLUSH with extras that are neither 0 nor 4 bytes', () => {
    expectCode(
      () => p.decodeFlush(rawFrame({ opcode: p.Opcode.FLUSH, extras: Buffer.alloc(8) })),
      'DCPX_ERR_BAD_EXTRAS',
    );
  });

  it('refuses a SET_VBUCKET with 2 bytes of extras', () => {
    expectCode(
      () => p.decodeFrame(p.encodeFrame({ opcode: p.Opcode.SET_VBUCKET, extras: Buffer.alloc(2) })),
      'DCPX_ERR_BAD_EXTRAS',
    );
    expectCode(
      () => p.decodeSetVBucket(rawFrame({ opcode: p.Opcode.SET_VBUCKET, extras: Buffer.alloc(2) })),
      'DCPX_ERR_BAD_EXTRAS',
    );
  });
});

describe('HELLO refuses a feature list of odd length', () => {
  it('refuses a request whose value is 3 bytes (kv_engine answers Einval)', () => {
    const bytes = p.encodeFrame({ opcode: p.Opcode.HELLO, key: 'agent', value: Buffer.from([0, 3, 0]) });
    expectCode(() => p.decodeHello(p.decodeFrame(bytes)), 'DCPX_ERR_BAD_VALUE');
  });

  it('refuses a successful response whose value is 1 byte', () => {
    const bytes = p.encodeFrame({ opcode: p.Opcode.HELLO, status: 0, value: Buffer.from([6]) });
    expectCode(() => p.decodeHelloResponse(p.decodeFrame(bytes)), 'DCPX_ERR_BAD_VALUE');
  });

  it('keeps the value of a failed HELLO as error text, whatever its length', () => {
    const bytes = p.encodeFrame({ opcode: p.Opcode.HELLO, status: p.Status.Einval, value: 'bad' });
    expect(p.decodeHelloResponse(p.decodeFrame(bytes))).toEqual({
      opaque: 0,
      status: p.Status.Einval,
      value: Buffer.from('bad'),
    });
  });

  it('names known features and shows unknown ones in hex', () => {
    expect(p.helloFeatureName(p.HelloFeature.MutationSeqno)).toBe('MutationSeqno');
    expect(p.helloFeatureName(0x0b)).toBe('Json');
    expect(p.helloFeatureName(0x1234)).toBe('Unknown(0x1234)');
  });
});

describe('KV codecs refuse the parts a layout forbids or requires', () => {
  it('refuses a GET request without a key', () => {
    expectCode(() => p.decodeGet(frame({ opcode: p.Opcode.GET })), 'DCPX_ERR_BAD_KEY');
  });

  it('refuses a DELETE request that carries a value', () => {
    expectCode(
      () => p.decodeDelete(frame({ opcode: p.Opcode.DELETE, key: 'k', value: 'v' })),
      'DCPX_ERR_BAD_VALUE',
    );
  });

  it('refuses a NOOP request that carries a key', () => {
    expectCode(() => p.decodeNoop(frame({ opcode: p.Opcode.NOOP, key: 'k' })), 'DCPX_ERR_BAD_KEY');
  });

  it('refuses a successful INCREMENT response whose counter is not 8 bytes', () => {
    const bad = frame({ opcode: p.Opcode.INCREMENT, status: 0, value: Buffer.alloc(4) });
    expectCode(() => p.decodeArithmeticResponse(bad), 'DCPX_ERR_BAD_VALUE');
  });

  it('refuses a SET_VBUCKET state outside 1..4 in every form', () => {
    expectCode(
      () => p.decodeSetVBucket(frame({ opcode: p.Opcode.SET_VBUCKET, extras: Buffer.from([9]) })),
      'DCPX_ERR_BAD_VALUE',
    );
    expectCode(
      () => p.decodeSetVBucket(frame({ opcode: p.Opcode.SET_VBUCKET, extras: Buffer.from([0, 0, 0, 5]) })),
      'DCPX_ERR_BAD_VALUE',
    );
    expectCode(
      () => p.decodeSetVBucket(frame({ opcode: p.Opcode.SET_VBUCKET, value: Buffer.from([0, 0, 0, 0]) })),
      'DCPX_ERR_BAD_VALUE',
    );
  });

  it('refuses a SET_VBUCKET JSON value sent without the JSON datatype (kv_engine answers Einval)', () => {
    const bad = frame({ opcode: p.Opcode.SET_VBUCKET, extras: Buffer.from([1]), value: '{}' });
    expectCode(() => p.decodeSetVBucket(bad), 'DCPX_ERR_BAD_VALUE');
  });

  it('refuses a 4-byte-extras SET_VBUCKET that also carries a value', () => {
    const bad = frame({ opcode: p.Opcode.SET_VBUCKET, extras: Buffer.from([0, 0, 0, 1]), value: 'x' });
    expectCode(() => p.decodeSetVBucket(bad), 'DCPX_ERR_BAD_VALUE');
  });

  it('refuses a GET_VBUCKET response whose state is not 4 bytes', () => {
    expectCode(
      () =>
        p.decodeGetVBucketResponse(
          frame({ opcode: p.Opcode.GET_VBUCKET, status: 0, value: Buffer.alloc(2) }),
        ),
      'DCPX_ERR_BAD_VALUE',
    );
  });

  it('refuses STAT arguments sent without the JSON datatype', () => {
    expectCode(
      () => p.decodeStat(frame({ opcode: p.Opcode.STAT, key: 'dcp', value: '{}' })),
      'DCPX_ERR_BAD_VALUE',
    );
  });

  it('refuses a SASL_AUTH without a mechanism', () => {
    expectCode(() => p.decodeSaslAuth(frame({ opcode: p.Opcode.SASL_AUTH, value: 'x' })), 'DCPX_ERR_BAD_KEY');
  });
});

describe('KV encoders refuse fields they cannot put on the wire', () => {
  it('refuses an empty key where the layout requires one', () => {
    expectCode(
      () => p.encodeGet({ opcode: p.Opcode.GET, opaque: 1, vbucket: 0, key: Buffer.alloc(0) }),
      'DCPX_ERR_BAD_FIELD',
    );
    expectCode(
      () =>
        p.encodeArithmetic({
          opcode: p.Opcode.DECREMENT,
          opaque: 1,
          vbucket: 0,
          delta: 1n,
          initial: 0n,
          expiration: 0,
          key: Buffer.alloc(0),
        }),
      'DCPX_ERR_BAD_FIELD',
    );
  });

  it('refuses a successful GET response without flags', () => {
    const response = {
      opcode: p.Opcode.GET,
      opaque: 1,
      status: 0,
      cas: 1n,
      datatype: 0,
      key: Buffer.alloc(0),
      value: Buffer.alloc(0),
    } as const;
    expectCode(() => p.encodeGetResponse(response), 'DCPX_ERR_BAD_FIELD');
  });

  it('refuses a negative delta, naming the field', () => {
    expect(() =>
      p.encodeArithmetic({
        opcode: p.Opcode.INCREMENT,
        opaque: 1,
        vbucket: 0,
        delta: -1n,
        initial: 0n,
        expiration: 0,
        key: Buffer.from('k'),
      }),
    ).toThrow(/delta=-1 is not a u64/);
  });

  it('refuses a stat name with a char that has no latin1 byte', () => {
    expectCode(
      () => p.encodeStatResponse({ opaque: 1, status: 0, key: 'é€', value: '' }),
      'DCPX_ERR_BAD_FIELD',
    );
  });

  it('refuses a mechanism name with a space in it', () => {
    expectCode(
      () => p.encodeSaslListMechsResponse({ opaque: 1, status: 0, mechanisms: ['SCRAM SHA1'] }),
      'DCPX_ERR_BAD_FIELD',
    );
  });

  it('refuses a JSON value with a pre-6.5 SET_VBUCKET form, which has no room for it', () => {
    expectCode(
      () => p.encodeSetVBucket({ opaque: 1, vbucket: 0, state: 1, extrasForm: 4, value: Buffer.from('{}') }),
      'DCPX_ERR_BAD_FIELD',
    );
  });
});

describe('KV response sequences and tolerant decoding', () => {
  it('ends a STAT sequence at the frame with empty key and value, or at an error', () => {
    const stat = (status: number, key: string, value: string) =>
      p.decodeStatResponse(p.decodeFrame(p.encodeStatResponse({ opaque: 9, status, key, value })));
    expect(p.isLastStatResponse(stat(0, 'curr_items', '42'))).toBe(false);
    // kv_engine's "settings" group sends its JSON under an empty key: not the end
    expect(p.isLastStatResponse(stat(0, '', '{"a":1}'))).toBe(false);
    expect(p.isLastStatResponse(stat(0, '', ''))).toBe(true);
    expect(p.isLastStatResponse(stat(p.Status.KeyEnoent, '', 'unknown group'))).toBe(true);
  });

  it('reads a mechanism list with stray or doubled spaces', () => {
    const bytes = p.encodeFrame({
      opcode: p.Opcode.SASL_LIST_MECHS,
      status: 0,
      value: ' PLAIN  SCRAM-SHA512 ',
    });
    expect(p.decodeSaslListMechsResponse(p.decodeFrame(bytes)).mechanisms).toEqual(['PLAIN', 'SCRAM-SHA512']);
  });

  it('reads an empty mechanism list as no mechanisms', () => {
    const bytes = p.encodeFrame({ opcode: p.Opcode.SASL_LIST_MECHS, status: 0 });
    expect(p.decodeSaslListMechsResponse(p.decodeFrame(bytes)).mechanisms).toEqual([]);
  });

  it('keeps the key of a GETK miss, as kv_engine sends it', () => {
    const bytes = p.encodeFrame({ opcode: p.Opcode.GETK, status: p.Status.KeyEnoent, key: 'missing' });
    const response = p.decodeGetResponse(p.decodeFrame(bytes));
    expect(response.flags).toBeUndefined();
    expect(response.key.toString()).toBe('missing');
  });

  it('encodes a DEL_VBUCKET asking for a synchronous delete with the "async=0" value', () => {
    const bytes = p.encodeDelVBucket({ opaque: 1, vbucket: 3, value: Buffer.from(p.DEL_VBUCKET_SYNC) });
    expect(p.decodeFrame(bytes).value.toString()).toBe('async=0');
  });
});
