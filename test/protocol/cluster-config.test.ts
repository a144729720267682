import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as p from '../../src/protocol/index.js';
import { u32 } from '../helpers/arbitraries.js';

// SET_CLUSTER_CONFIG 0xb4 / GET_CLUSTER_CONFIG 0xb5 (kv_engine 7.1+) and the manager-epoch helpers
// (messages/cluster-config.ts, messages/manager-epoch.ts).

const int64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
const json = fc
  .json({ maxDepth: 2 })
  .filter((s) => s.length > 0)
  .map((s) => Buffer.from(s));
const frame = (bytes: Buffer) => p.decodeFrame(bytes);

describe('SET_CLUSTER_CONFIG and GET_CLUSTER_CONFIG codecs', () => {
  it('round-trip a SET_CLUSTER_CONFIG: epoch and revision as int64 BE extras, the JSON value, the bucket key', () => {
    fc.assert(
      fc.property(
        u32,
        int64,
        int64,
        json,
        fc.option(fc.stringMatching(/^[a-z]{1,12}$/), { nil: undefined }),
        (opaque, epoch, revision, config, bucket) => {
          const request: p.SetClusterConfigRequest = {
            opaque,
            epoch,
            revision,
            config,
            ...(bucket ? { bucket } : {}),
          };
          const bytes = p.encodeSetClusterConfig(request);
          const f = frame(bytes);
          expect(f.opcode).toBe(0xb4);
          expect(f.datatype).toBe(p.Datatype.Json);
          expect(f.extras.readBigInt64BE(0)).toBe(epoch);
          expect(f.extras.readBigInt64BE(8)).toBe(revision);
          expect(p.decodeSetClusterConfig(f)).toEqual(request);
          expect(p.encodeSetClusterConfig(p.decodeSetClusterConfig(f))).toEqual(bytes);
        },
      ),
    );
  });

  it('round-trip a GET_CLUSTER_CONFIG with and without the version the client has', () => {
    fc.assert(
      fc.property(
        u32,
        fc.option(fc.record({ epoch: int64, revision: int64 }), { nil: undefined }),
        (opaque, known) => {
          const request: p.GetClusterConfigRequest = { opaque, ...(known ? { known } : {}) };
          const f = frame(p.encodeGetClusterConfig(request));
          expect(f.opcode).toBe(0xb5);
          expect(f.extrasLength).toBe(known ? 16 : 0);
          expect(p.decodeGetClusterConfig(f)).toEqual(request);
        },
      ),
    );
  });

  it('round-trip a GET_CLUSTER_CONFIG response: the config with datatype JSON, an error with its text', () => {
    fc.assert(
      fc.property(u32, json, (opaque, config) => {
        const f = frame(p.encodeGetClusterConfigResponse({ opaque, status: p.Status.Success, config }));
        expect(f.datatype).toBe(p.Datatype.Json);
        expect(p.decodeGetClusterConfigResponse(f)).toEqual({ opaque, status: p.Status.Success, config });
      }),
    );
    const f = frame(
      p.encodeGetClusterConfigResponse({ opaque: 7, status: p.Status.NoBucket, value: Buffer.from('none') }),
    );
    expect(p.decodeGetClusterConfigResponse(f)).toEqual({
      opaque: 7,
      status: p.Status.NoBucket,
      value: Buffer.from('none'),
    });
  });

  it('refuse to encode an epoch beyond int64 or an empty config, and to decode a config that is not JSON', () => {
    const base = { opaque: 1, revision: 1n, config: Buffer.from('{}') };
    expect(() => p.encodeSetClusterConfig({ ...base, epoch: 2n ** 63n })).toThrow(/int64/);
    expect(() => p.encodeSetClusterConfig({ ...base, epoch: 1n, config: Buffer.alloc(0) })).toThrow(/JSON/);
    const bytes = p.encodeSetClusterConfig({ ...base, epoch: 1n });
    bytes[5] = p.Datatype.Raw; // the datatype byte of the header
    expect(() => p.decodeSetClusterConfig(frame(bytes))).toThrow(/JSON/);
  });

  it('order config versions by epoch first, then revision', () => {
    fc.assert(
      fc.property(int64, int64, int64, int64, (e1, r1, e2, r2) => {
        const c = p.compareConfigVersion({ epoch: e1, revision: r1 }, { epoch: e2, revision: r2 });
        const expected = e1 !== e2 ? Math.sign(Number(e1 - e2)) : Math.sign(Number(r1 - r2));
        expect(c).toBe(expected);
      }),
    );
  });
});

describe('the manager epoch on node commands', () => {
  it('reads {"epoch": N} from a JSON value beside other fields, and nothing from a raw one', () => {
    const json = p.decodeFrame(
      p.encodeSetVBucket({
        opaque: 1,
        vbucket: 2,
        state: p.VBucketState.Active,
        value: p.epochValue(9, { topology: [['a', 'b']] }),
      }),
    );
    expect(p.readEpoch(json, json.value)).toBe(9n);
    const raw = p.decodeFrame(p.encodeDelVBucket({ opaque: 1, vbucket: 2, value: Buffer.from('async=0') }));
    expect(p.readEpoch(raw, raw.value)).toBeUndefined();
  });

  it('refuses an epoch that is not a whole number >= 0 as a malformed request', () => {
    for (const value of ['{"epoch":-1}', '{"epoch":1.5}', '{"epoch":"3"}', '[1]', '{']) {
      const f = p.decodeFrame(
        p.encodeDelVBucket({ opaque: 1, vbucket: 2, value: Buffer.from(value), datatype: p.Datatype.Json }),
      );
      expect(() => p.readEpoch(f, f.value), value).toThrow(p.ProtocolError);
    }
  });

  it('classifies the stale-epoch refusal by its ref, not by EACCESS alone', () => {
    const stale = p.decodeFrame(
      p.encodeStaleEpochResponse({ opcode: p.Opcode.SET_VBUCKET, opaque: 3, epoch: 3n, seen: 5n }),
    );
    expect(stale.status).toBe(p.Status.Eaccess);
    expect(stale.datatype).toBe(p.Datatype.Json);
    expect(JSON.parse(stale.value.toString())).toEqual({
      error: { context: 'stale manager epoch 3; this node has seen 5', ref: 'stale-epoch' },
    });
    expect(p.isStaleEpoch(stale)).toBe(true);
    const auth = p.decodeFrame(
      p.encodeStatusResponse({ opcode: p.Opcode.SET_VBUCKET, opaque: 3, status: p.Status.Eaccess }),
    );
    expect(p.isStaleEpoch(auth)).toBe(false);
    expect(p.StaleEpochError.from(stale)?.context).toBe('stale manager epoch 3; this node has seen 5');
    expect(p.StaleEpochError.from(auth)).toBeUndefined();
  });
});
