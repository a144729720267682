import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkWithTshark, decodePcap, findTshark, tcpConversationPcap } from '../../src/conformance/index.js';
import { type MessageSample, messageSamples } from '../../src/conformance/samples.js';
import * as p from '../../src/protocol/index.js';
import { requireTool } from '../helpers/tools.js';

// Wireshark's couchbase dissector (Debian's tshark 4.0) reads one of every message dcpx encodes, laid out
// as a TCP conversation in a pcap file: every field equals what we sent, nothing is malformed, and the only
// expert items are the dissector's own limitations, listed here exactly (a change in dcpx or in the
// dissector fails this file).

const withTshark = requireTool('tshark', findTshark());

/** Encoders that build parts of frames, not messages: covered through the encoders that use them. */
const NOT_MESSAGES = new Set([
  'encodeFrame',
  'writeHeader',
  'encodeFailoverLogValue',
  'encodeMutationTokenExtras',
]);

function clone(name: string): MessageSample {
  const sample = messageSamples().find((s) => s.name === name);
  if (!sample) throw new Error(`no sample named ${name}`);
  return sample;
}

describe('the message samples', () => {
  it('include a message made by every encoder the protocol module exports', () => {
    const exported = Object.entries(p)
      .filter(([name, value]) => /^(encode|write)[A-Z]/.test(name) && typeof value === 'function')
      .map(([name]) => name)
      .filter((name) => !NOT_MESSAGES.has(name))
      .sort();
    const used = [...new Set(messageSamples().map((s) => s.via))].sort();
    expect(used).toEqual(exported);
  });

  it('send every opcode dcpx knows as a request at least once', () => {
    const requested = new Set(
      messageSamples()
        .filter((s) => s.expect.magic === p.Magic.Request)
        .map((s) => s.expect.opcode),
    );
    const missing = Object.entries(p.Opcode).filter(([, code]) => !requested.has(code));
    expect(missing).toEqual([]);
  });

  it('are each one whole frame whose header says what the sample expects', () => {
    for (const sample of messageSamples()) {
      const frame = p.decodeFrame(sample.bytes);
      expect(frame.length, sample.name).toBe(sample.bytes.length);
      expect([frame.magic, frame.opcode, frame.opaque, frame.cas, frame.datatype], sample.name).toEqual([
        sample.expect.magic,
        sample.expect.opcode,
        sample.expect.opaque,
        sample.expect.cas,
        sample.expect.datatype,
      ]);
    }
  });

  it('have names of their own, and every documented limitation says why', () => {
    const samples = messageSamples();
    expect(new Set(samples.map((s) => s.name)).size).toBe(samples.length);
    for (const s of samples)
      if (s.tsharkLimitation) expect(s.tsharkLimitation.why.length, s.name).toBeGreaterThan(40);
  });
});

describe('Wireshark conformance (tshark)', () => {
  withTshark(
    'decodes one of every message dcpx encodes, field for field, with only the known dissector limitations',
    async (tshark) => {
      const samples = messageSamples();
      const report = await checkWithTshark(samples, { tshark });
      expect(report.problems).toEqual([]);
      expect(report.pdus).toBe(samples.length);
      expect(report.frames).toHaveLength(samples.length);
      expect(report.malformedPackets).toBe(1); // the v2.2 snapshot marker, below
      const limitations = Object.fromEntries(
        report.limitations.map((l) => [
          l.sample,
          [...l.deviations, ...l.undecoded.map((u) => `${u}: not decoded`)],
        ]),
      );
      expect(limitations).toEqual({
        'DCP_OPEN (consumer, with a consumer_name value)': [
          'warning couchbase.warn.shall_not_have_value: DCP Open Connection Request shall not have Value',
        ],
        'DCP_CONTROL response (unknown key)': [
          "warning couchbase.warn.unknown_opcode: DCP Control: Command isn't supported",
        ],
        'DCP_ADD_STREAM response (refused at once, no stream opaque)': [
          'warning couchbase.warn.unknown_opcode: DCP Add Stream: Key exists',
          'warning couchbase.warn.must_have_extras: DCP Add Stream Response must have Extras',
        ],
        'DCP_ADD_STREAM response (failed after the stream request, with its stream opaque)': [
          'warning couchbase.warn.unknown_opcode: DCP Add Stream: Not my vBucket',
        ],
        'DCP_CLOSE_STREAM response (no stream)': [
          'warning couchbase.warn.unknown_opcode: DCP Close Stream: Key not found',
        ],
        'DCP_STREAM_REQ response (failover log)': [
          'warning _ws.string.trailing_stray_characters: Trailing stray characters',
        ],
        'DCP_STREAM_REQ response (rollback)': [
          'warning couchbase.warn.unknown_opcode: DCP Stream Request: Rollback',
          'warning _ws.string.trailing_stray_characters: Trailing stray characters',
          'rollbackSeqno: not decoded',
        ],
        'DCP_STREAM_REQ response (not my vBucket)': [
          'warning couchbase.warn.unknown_opcode: DCP Stream Request: Not my vBucket',
        ],
        'DCP_GET_FAILOVER_LOG response': [
          'warning _ws.string.trailing_stray_characters: Trailing stray characters',
        ],
        DCP_STREAM_END: ['streamEndReason: not decoded'],
        'DCP_STREAM_END response (no such stream)': [
          'warning couchbase.warn.unknown_opcode: DCP Stream End: No DCP Stream for this request',
        ],
        'DCP_SNAPSHOT_MARKER v2.2': [
          'error _ws.malformed.expert: Malformed Packet (Exception occurred)',
          'purgeSeqno: not decoded',
          'highPreparedSeqno: not decoded',
        ],
        'DCP_MUTATION response (opaque does not match the stream)': [
          'warning couchbase.warn.unknown_opcode: DCP (Key) Mutation: Opaque does not match',
        ],
        'DCP_FLUSH (obsolete; encoded for tests, never sent)': [
          'warning couchbase.warn.must_have_extras: DCP Flush Request must have Extras',
        ],
        'DCP_SET_VBUCKET_STATE (pending)': ['vbucketState: not decoded'],
        'unknown command response (VERBOSITY, which dcpx does not serve)': [
          'warning couchbase.warn.unknown_opcode: Verbosity: Unknown command',
        ],
        TOUCH: ['expiration: not decoded'],
        GAT: ['expiration: not decoded'],
        GATQ: ['expiration: not decoded'],
        'GAT response': ['flags: not decoded'],
        'GET_REPLICA response': ['flags: not decoded'],
        GET_LOCKED: ['lockTime: not decoded'],
        'GET_LOCKED response': ['flags: not decoded'],
        'GET response (miss)': [
          'warning couchbase.warn.unknown_opcode: Get: Key not found',
          'warning couchbase.warn.must_have_extras: Get Response must have Extras',
        ],
        'GETK response (miss, with the key)': [
          'warning couchbase.warn.unknown_opcode: Get Key: Key not found',
          'warning couchbase.warn.must_have_extras: Get Key Response must have Extras',
        ],
        'ADD response (exists)': ['warning couchbase.warn.unknown_opcode: Add: Key exists'],
        'INCREMENT response (not a number)': [
          'warning couchbase.warn.unknown_opcode: Increment: Bad value to incr/decr',
        ],
        'FLUSH response (not supported)': [
          "warning couchbase.warn.unknown_opcode: Flush: Command isn't supported",
        ],
        'SASL_AUTH response (continue)': [
          'warning couchbase.warn.unknown_opcode: SASL Authenticate: Authentication continue',
        ],
        'SASL_AUTH response (refused)': [
          'warning couchbase.warn.unknown_opcode: SASL Authenticate: Authentication error',
        ],
        'SET_VBUCKET (state in 1 byte of extras)': ['vbucketState: not decoded'],
        'SET_VBUCKET (state in 1 byte of extras, JSON topology)': ['vbucketState: not decoded'],
        'SET_VBUCKET (pre-6.5: state in 4 bytes of extras)': ['vbucketState: not decoded'],
        'SET_VBUCKET (pre-6.5: state in a 4-byte value)': [
          'warning _ws.string.trailing_stray_characters: Trailing stray characters',
          'vbucketState: not decoded',
        ],
        'GET_VBUCKET response': [
          'warning _ws.string.trailing_stray_characters: Trailing stray characters',
          'vbucketState: not decoded',
        ],
        'DEL_VBUCKET response (not my vBucket)': [
          'warning couchbase.warn.unknown_opcode: Delete VBucket: Not my vBucket',
        ],
        'DEL_VBUCKET response (stale manager epoch)': [
          'warning couchbase.warn.unknown_opcode: Delete VBucket: Access error',
        ],
        SET_CLUSTER_CONFIG: ['configEpoch: not decoded', 'configRevision: not decoded'],
        'GET_CLUSTER_CONFIG (with the version the client has)': [
          'configEpoch: not decoded',
          'configRevision: not decoded',
        ],
        // dcpx-private opcodes: the header and JSON value decode, the opcode is unknown to Wireshark
        DCPX_SET_REPLICATION: ['warning couchbase.warn.unknown_opcode: Unknown opcode: 0xe0'],
        'DCPX_SET_REPLICATION response': ['warning couchbase.warn.unknown_opcode: Unknown opcode: 0xe0'],
        DCPX_TAKEOVER: ['warning couchbase.warn.unknown_opcode: Unknown opcode: 0xe1'],
        'DCPX_TAKEOVER response (failed)': [
          'warning couchbase.warn.unknown_opcode: Unknown opcode: 0xe1',
          'warning couchbase.warn.unknown_opcode: Unknown opcode (0xe1): Internal error',
        ],
        DCPX_GET_REPLICATION: ['warning couchbase.warn.unknown_opcode: Unknown opcode: 0xe2'],
      });
    },
    120_000,
  );

  withTshark(
    'flags exactly the answers whose status is not Success, once each',
    async (tshark) => {
      const samples = messageSamples();
      const report = await checkWithTshark(samples, { tshark });
      samples.forEach((sample, i) => {
        // (an opcode Wireshark does not know raises the same expert item, "Unknown opcode: 0x..")
        const statusWarnings = report.frames[i]!.deviations.filter(
          (d) =>
            d.startsWith('warning couchbase.warn.unknown_opcode: ') &&
            !d.startsWith('warning couchbase.warn.unknown_opcode: Unknown opcode: '),
        );
        const failed = sample.expect.status !== undefined && sample.expect.status !== p.Status.Success;
        expect(statusWarnings, sample.name).toHaveLength(failed ? 1 : 0);
      });
    },
    120_000,
  );

  withTshark(
    'reassembles a frame that TCP carried in many segments',
    async (tshark) => {
      const value = Buffer.alloc(100_000, 'x');
      const sample = clone('DCP_MUTATION');
      sample.bytes = p.encodeMutation({ ...p.decodeMutation(p.decodeFrame(sample.bytes)), value });
      sample.expect.fields = { ...sample.expect.fields, text: value.toString() };
      const report = await checkWithTshark([sample], { tshark, maxPayload: 1_400 });
      expect(report.problems).toEqual([]);
      expect(report.pdus).toBe(1);
      // handshake (3), then 72 data packets: the PDU is decoded in the last of them
      expect(report.frames[0]!.packet).toBe(3 + Math.ceil(sample.bytes.length / 1_400));
    },
    120_000,
  );

  withTshark(
    'reports what we got wrong: bad extras, a wrong field, an opaque in host order, stale limitations',
    async (tshark) => {
      const badExtras: MessageSample = {
        name: 'mutation with 30 bytes of extras',
        direction: 'server',
        via: 'encodeFrame',
        bytes: p.encodeFrame({
          opcode: p.Opcode.DCP_MUTATION,
          vbucket: 7,
          opaque: 0x0102_0304,
          extras: Buffer.alloc(30, 1),
          key: 'k',
          value: 'v',
        }),
        expect: {
          magic: 0x80,
          opcode: 0x57,
          opaque: 0x0102_0304,
          vbucket: 7,
          cas: 0n,
          datatype: 0,
          key: 'k',
          fields: {},
        },
      };
      const wrongField = clone('DCP_STREAM_REQ');
      wrongField.expect.fields.startSeqno! += 1n;
      const hostOrderOpaque = clone('DCP_NOOP');
      hostOrderOpaque.bytes.writeUInt32LE(hostOrderOpaque.expect.opaque, 12);
      const staleLimitation = clone('DCP_CLOSE_STREAM');
      staleLimitation.tsharkLimitation = {
        why: 'pretends the request gets a status warning',
        deviations: ['warning couchbase.warn.unknown_opcode: DCP Close Stream: Key not found'],
      };
      const undocumented = clone('DCP_STREAM_END');
      delete undocumented.tsharkLimitation;

      const report = await checkWithTshark(
        [badExtras, wrongField, hostOrderOpaque, staleLimitation, undocumented],
        {
          tshark,
        },
      );
      expect(report.problems).toEqual([
        'mutation with 30 bytes of extras: warning couchbase.warn.illegal_extras_length: Illegal Extras length, should be 31',
        'DCP_STREAM_REQ: couchbase.extras.start_seqno: tshark shows "68107", we sent 0x10a0c',
        'DCP_NOOP: couchbase.opaque: tshark shows "0xdc00000a", we sent 0xa0000dc',
        'DCP_CLOSE_STREAM: tshark reports [], the documented limitation says [warning couchbase.warn.unknown_opcode: DCP Close Stream: Key not found]',
        'DCP_STREAM_END: Wireshark 4.0 cannot show streamEndReason, and the sample documents no limitation',
      ]);
    },
    120_000,
  );

  withTshark(
    'checks the IPv4 and TCP checksums of the capture',
    async (tshark) => {
      const pcap = tcpConversationPcap(
        [
          { from: 'client', data: p.encodeDcpNoop({ opaque: 1 }) },
          { from: 'server', data: p.encodeDcpNoop({ opaque: 2 }) },
        ],
        { serverPort: 11_299 },
      );
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-checksums-'));
      try {
        const clean = path.join(dir, 'clean.pcap');
        fs.writeFileSync(clean, pcap.bytes);
        const serious = (packets: Awaited<ReturnType<typeof decodePcap>>) =>
          packets.flatMap((k) =>
            k.experts
              .filter((x) => x.severity === 'error' || x.severity === 'warning')
              .map((x) => `${k.number} ${x.field}`),
          );
        expect(serious(await decodePcap(clean, 11_299, { tshark }))).toEqual([]);

        const broken = Buffer.from(pcap.bytes);
        const packetAt: number[] = [];
        for (let at = 24; at < broken.length; at += 16 + broken.readUInt32LE(at + 8)) packetAt.push(at + 16);
        broken[packetAt[3]! + 14 + 20 + 16]! ^= 0xff; // packet 4: a byte of the TCP checksum
        broken[packetAt[5]! + 14 + 10]! ^= 0xff; // packet 6: a byte of the IPv4 header checksum
        const file = path.join(dir, 'broken.pcap');
        fs.writeFileSync(file, broken);
        expect(serious(await decodePcap(file, 11_299, { tshark }))).toEqual([
          '4 tcp.checksum_bad.expert',
          '6 ip.checksum_bad.expert',
        ]);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
    120_000,
  );
});
