import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect } from 'vitest';
import { captureWhile, decodeCapture } from '../../src/conformance/index.js';
import { checkCapture } from '../../src/conformance/pcap-check.js';
import { noAuth } from '../../src/node/auth.js';
import { StorageNode } from '../../src/node/node.js';
import * as p from '../../src/protocol/index.js';
import { Replicator } from '../../src/proxy/replicator.js';
import { itWithTool } from '../helpers/tools.js';

// Live captures of real conversations, decoded by Wireshark's couchbase dissector: a replication with
// a takeover retry between two nodes through the proxy.

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

const VB = 2;

describe('captured conversations (tshark)', () => {
  itWithTool('tshark')(
    'a producer↔consumer conversation through the proxy decodes clean, and the close is synchronous',
    async () => {
      const all = [0, 1, 2, 3];
      const a = await StorageNode.start({ port: 0, vbuckets: 4, active: all, auth: noAuth });
      const b = await StorageNode.start({
        port: 0,
        vbuckets: 4,
        replica: all,
        refuseTakeoverStates: 1,
        auth: noAuth,
      });
      cleanups.push(
        () => a.stop(),
        () => b.stop(),
      );
      const replicator = new Replicator({
        producer: { host: '127.0.0.1', port: a.address.port },
        consumer: { host: '127.0.0.1', port: b.address.port },
      });
      cleanups.push(() => replicator.close());
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-capture-'));
      cleanups.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
      const file = path.join(dir, 'conversation.pcapng');
      const ports = [a.address.port, b.address.port];
      const result = await captureWhile(ports, file, async () => {
        for (let i = 0; i < 400; i++)
          a.store
            .vbucket(i % 4)
            .mutate({ op: 'set', key: Buffer.from(`k${i}`), value: Buffer.from(`v${i}`) });
        a.store.vbucket(1).remove(Buffer.from('k1'));
        await replicator.setStreams(all);
        for (let i = 0; i < 100; i++)
          a.store.vbucket(i % 4).mutate({ op: 'set', key: Buffer.from(`live${i}`), value: Buffer.from('x') });
        // the live writes reach the replica before the takeover starts (a condition, not a pause)
        while (!all.every((vb) => b.store.vbucket(vb).highSeqno === a.store.vbucket(vb).highSeqno))
          await new Promise((r) => setTimeout(r, 5));
        return replicator.takeover(VB, { attempts: 3, minBackoffMs: 20 });
      });
      expect(result.attempts).toBe(2);

      const { pdus, experts, malformed } = await decodeCapture(file, ports);
      expect(pdus.length).toBeGreaterThan(600);
      expect(malformed).toEqual([]);
      const field = (i: number, name: string) => pdus[i]!.get(name)?.[0];
      const num = (text: string | undefined) => (text === undefined ? undefined : Number(text));
      // every warning is one of the dissector's known quirks (see src/conformance/tshark.ts)
      const unexpected = experts.filter((x) => {
        if (x.severity < 0x00600000) return false;
        const opcode = num(field(x.pdu, 'couchbase.opcode'));
        const response = field(x.pdu, 'couchbase.magic') === '0x81';
        const status = num(field(x.pdu, 'couchbase.status'));
        if (response && status !== 0 && x.field === 'couchbase.warn.unknown_opcode') return false;
        if (
          response &&
          x.message === 'Trailing stray characters' &&
          (opcode === 0x53 || opcode === 0x54 || opcode === 0x3e)
        )
          return false;
        return true;
      });
      expect(unexpected).toEqual([]);

      // the synchronous close: between two ADD_STREAMs of the vBucket to the consumer, the producer's
      // CLOSE_STREAM reply, and the later ADD_STREAM carries another opaque
      const consumerPort = String(b.address.port);
      const producerPort = String(a.address.port);
      const adds = pdus
        .map((_, i) => i)
        .filter(
          (i) =>
            field(i, 'couchbase.opcode') === '0x51' &&
            field(i, 'couchbase.magic') === '0x80' &&
            field(i, 'tcp.dstport') === consumerPort &&
            num(field(i, 'couchbase.vbucket')) === VB,
        );
      expect(adds.length).toBe(3); // the replica stream, takeover attempt 1, takeover attempt 2
      const closeReplies = pdus
        .map((_, i) => i)
        .filter(
          (i) =>
            field(i, 'couchbase.opcode') === '0x52' &&
            field(i, 'couchbase.magic') === '0x81' &&
            field(i, 'tcp.srcport') === producerPort,
        );
      for (let k = 1; k < adds.length; k++) {
        expect(closeReplies.some((i) => i > adds[k - 1]! && i < adds[k]!)).toBe(true);
        expect(field(adds[k]!, 'couchbase.opaque')).not.toBe(field(adds[k - 1]!, 'couchbase.opaque'));
      }
      expect(b.store.vbucket(VB).state).toBe(p.VBucketState.Active);

      // the conformance kit's capture rules (dcpx conform --pcap) find nothing wrong in the conversation
      const kit = await checkCapture(file, { ports });
      expect(kit.results.filter((r) => r.outcome !== 'pass')).toEqual([]);
      // …and it judged the whole conversation: every stream, the takeover states and the acks
      expect(kit.summary.connections).toBe(2);
      expect(kit.summary.streams).toBeGreaterThanOrEqual(4);
      expect(kit.summary.items).toBeGreaterThanOrEqual(500);
      expect(kit.summary.setStates).toBeGreaterThanOrEqual(2);
    },
    120_000,
  );

  itWithTool('tshark')(
    'a sync replication conversation (prepare, ack, commit, abort) decodes field for field, and the capture rules pass it',
    async () => {
      const all = [0, 1];
      const a = await StorageNode.start({ port: 0, vbuckets: 2, active: all, auth: noAuth });
      const b = await StorageNode.start({ port: 0, vbuckets: 2, replica: all, auth: noAuth });
      cleanups.push(
        () => a.stop(),
        () => b.stop(),
      );
      const replicator = new Replicator({
        producer: { host: '127.0.0.1', port: a.address.port },
        consumer: { host: '127.0.0.1', port: b.address.port },
        syncReplication: { consumerName: `127.0.0.1:${b.address.port}` },
      });
      cleanups.push(() => replicator.close());
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-capture-'));
      cleanups.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
      const file = path.join(dir, 'sync.pcapng');
      const ports = [a.address.port, b.address.port];
      const vbA = a.store.vbucket(0);
      const vbB = b.store.vbucket(0);
      const until = async (cond: () => boolean) => {
        while (!cond()) await new Promise((r) => setTimeout(r, 5));
      };
      await captureWhile(ports, file, async () => {
        await replicator.setStreams(all);
        const key = Buffer.from('doc:durable');
        const prepare = vbA.prepare({ op: 'set', key, value: Buffer.from('v') }, p.DurabilityLevel.Majority)
          .item!;
        await until(() => vbB.preparedFor(key) !== undefined);
        vbA.commit(prepare.bySeqno);
        const second = vbA.prepare({ op: 'delete', key }, p.DurabilityLevel.Majority).item!;
        vbA.abort(second.bySeqno);
        await until(() => vbB.highSeqno === vbA.highSeqno);
      });
      const { pdus, experts, malformed } = await decodeCapture(file, ports);
      expect(malformed).toEqual([]);
      const field = (i: number, name: string) => pdus[i]!.get(name)?.[0];
      const opcodes = pdus.map((_, i) => field(i, 'couchbase.opcode'));
      // DCP_PREPARE 0x60, DCP_SEQNO_ACKNOWLEDGED 0x61, DCP_COMMIT 0x62, DCP_ABORT 0x63
      for (const op of ['0x60', '0x61', '0x62', '0x63']) expect(opcodes).toContain(op);
      const pdu = (op: string) => pdus[opcodes.indexOf(op)]!;
      const values = (op: string, names: string[]) => names.map((n) => pdu(op).get(n)?.[0]);
      // field for field as the store wrote them: prepare at 1 (level majority in Wireshark's
      // durability_req field), its commit at 2, a delete prepared at 3 and aborted at 4, and the
      // replica's acknowledgement of 1 (tshark 4.0 names SEQNO_ACKNOWLEDGED's prepared seqno by_seqno)
      expect(
        values('0x60', [
          'couchbase.extras.by_seqno',
          'couchbase.extras.rev_seqno',
          'couchbase.extras.deleted',
          'couchbase.flex_frame.frame.durability_req',
          'couchbase.value',
        ]),
      ).toEqual(['1', '1', '0', '1', 'v']);
      expect(
        values('0x62', ['couchbase.extras.by_seqno_prepared', 'couchbase.extras.by_seqno', 'couchbase.key']),
      ).toEqual(['1', '2', 'doc:durable']);
      expect(
        values('0x63', ['couchbase.extras.by_seqno_prepared', 'couchbase.extras.by_seqno_abort']),
      ).toEqual(['3', '4']);
      expect(values('0x61', ['couchbase.extras.by_seqno', 'couchbase.vbucket'])).toEqual(['1', '0']);
      const warnings = experts.filter((x) => {
        if (x.severity < 0x00600000) return false;
        const response = field(x.pdu, 'couchbase.magic') === '0x81';
        const opcode = Number(field(x.pdu, 'couchbase.opcode'));
        if (response && x.message === 'Trailing stray characters' && (opcode === 0x53 || opcode === 0x54))
          return false;
        return true;
      });
      expect(warnings).toEqual([]);
      const kit = await checkCapture(file, { ports });
      expect(kit.results.filter((r) => r.outcome !== 'pass')).toEqual([]);
    },
    120_000,
  );
});
