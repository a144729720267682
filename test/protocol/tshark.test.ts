import { describe, expect } from 'vitest';
import { catalogue, checkWithTshark, type Sample } from '../../src/conformance/index.js';
import * as p from '../../src/protocol/index.js';
import { itWithTool } from '../helpers/tools.js';

// Wireshark's couchbase dissector (Debian's tshark) decodes every message dcpx sends, captured live on
// loopback: fields equal ours, nothing malformed, no warnings beyond the dissector's own known quirks,
// which are listed exactly (a change in dcpx or in the dissector makes this fail).

describe('Wireshark conformance (tshark)', () => {
  itWithTool('tshark')(
    'decodes one of every message we send, field for field',
    async () => {
      const samples = catalogue();
      const report = await checkWithTshark(samples);
      expect(report.problems).toEqual([]);
      expect(report.decoded).toBe(samples.length);
      expect(samples.length).toBeGreaterThanOrEqual(75);
      expect(report.known.map((k) => `${k.sample}: ${k.limitation}`).sort()).toEqual(
        [
          'DCP_CLOSE_STREAM response: status',
          'DCP_STREAM_REQ response (failover log): binary-as-string',
          'DCP_STREAM_REQ response (rollback): status',
          'DCP_STREAM_REQ response (rollback): binary-as-string',
          'DCP_GET_FAILOVER_LOG response: binary-as-string',
          'DCP_SNAPSHOT_MARKER v2.2: marker-v2.2',
          'DCP_SET_VBUCKET_STATE response: status',
          'GET response (miss): status',
          'GET response (miss): get-miss',
          'SASL_AUTH response: status',
          'GET_VBUCKET response: binary-as-string',
        ].sort(),
      );
    },
    120_000,
  );

  itWithTool('tshark')(
    'catches a frame we got wrong (a mutation with 30 bytes of extras)',
    async () => {
      const bad = p.encodeFrame({
        opcode: p.Opcode.DCP_MUTATION,
        vbucket: 1,
        opaque: 5,
        extras: Buffer.alloc(30, 1),
        key: 'k',
        value: 'v',
      });
      const sample: Sample = {
        name: 'broken mutation',
        bytes: bad,
        expect: { magic: 0x80, opcode: 0x57, opaque: 5, vbucket: 1, key: 'k' },
      };
      const report = await checkWithTshark([sample]);
      expect(report.problems.length).toBeGreaterThan(0);
      expect(report.problems.map((x) => x.kind)).toEqual(
        expect.arrayContaining([expect.stringMatching(/warning|malformed/)]),
      );
    },
    120_000,
  );
});
