import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { tcpConversationPcap } from '../../src/conformance/pcap.js';
import type { KitReport } from '../../src/conformance/report.js';
import { findTshark } from '../../src/conformance/tshark.js';
import { buildConversation } from '../helpers/dcp-conversation.js';
import { KNOWN_DCPX_DEFECTS, PRODUCER_FAULTS } from '../helpers/dcp-faults.js';
import { MutatingRelay } from '../helpers/mutating-relay.js';
import { type NodeProc, runDcpx, startNode } from '../helpers/processes.js';
import { requireTool } from '../helpers/tools.js';

// `dcpx conform` as a user runs it: real processes, the kit against `dcpx node` on both sides, a
// capture file, and the samples check that runs without a target.

const nodes: NodeProc[] = [];
afterEach(async () => {
  for (const n of nodes.splice(0)) await n.stop('SIGKILL');
});
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-conform-cli-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function conform(args: string[]): Promise<{ code: number | string; out: string; err: string }> {
  const proc = runDcpx(['conform', ...args]);
  const code = await proc.exited;
  return { code, out: proc.stdout(), err: proc.stderr() };
}

const outcomes = (report: KitReport) => Object.fromEntries(report.results.map((r) => [r.id, r.outcome]));

describe('dcpx conform (CLI)', () => {
  it('--producer: every scenario but the known dcpx defects passes against dcpx node (SASL), JSON on stdout', async () => {
    const node = await startNode([
      '--vbuckets',
      '4',
      '--active',
      '0-3',
      '--user',
      'kit',
      '--password',
      'secret',
    ]);
    nodes.push(node);
    const { code, out, err } = await conform([
      '--producer',
      `127.0.0.1:${node.port}`,
      '--user',
      'kit',
      '--password',
      'secret',
      '--vbuckets',
      '0,3',
      '--noop-interval',
      '0.2',
      '--json',
    ]);
    expect(err).toBe('');
    const report = JSON.parse(out) as KitReport;
    expect(report.mode).toBe('producer');
    const failing = report.results.filter((r) => r.outcome !== 'pass').map((r) => r.id);
    expect(
      failing.filter((id) => !KNOWN_DCPX_DEFECTS.includes(id)),
      out,
    ).toEqual([]);
    expect(report.results.length).toBe(16);
    // exit 0 only when nothing fails
    expect(code).toBe(failing.length === 0 ? 0 : 1);
  }, 60_000);

  it('--consumer: every scenario passes against dcpx node, the retry ask included', async () => {
    const node = await startNode([
      '--vbuckets',
      '4',
      '--replica',
      '0-3',
      '--no-auth',
      '--refuse-takeover-states',
      '1',
    ]);
    nodes.push(node);
    const { code, out } = await conform([
      '--consumer',
      `127.0.0.1:${node.port}`,
      '--vbuckets',
      '0,3',
      '--json',
    ]);
    const report = JSON.parse(out) as KitReport;
    expect(
      Object.values(outcomes(report)).every((o) => o === 'pass'),
      out,
    ).toBe(true);
    expect(outcomes(report)['retry-ask-retires-stream']).toBe('pass');
    expect(code).toBe(0);
  }, 60_000);

  it('--producer: a failure prints the table with its reason and frames, and exits 1', async () => {
    const node = await startNode(['--vbuckets', '4', '--active', '0-3', '--no-auth']);
    nodes.push(node);
    const fault = PRODUCER_FAULTS.find((f) => f.scenario === 'bad-request-statuses')!;
    const relay = new MutatingRelay(node.port, fault.make);
    await relay.listen();
    try {
      const { code, out } = await conform([
        '--producer',
        `127.0.0.1:${relay.port}`,
        '--vbuckets',
        '0,3',
        '--noop-interval',
        '0.2',
      ]);
      expect(out).toMatch(
        /^FAIL\s+bad-request-statuses\s+§2 §4\.3 §4\.4\s+STREAM_REQ with snapshot start above start: 0x04 \(want 0x22\)/m,
      );
      expect(out).toMatch(/^\s+#\d+ P→C STREAM_REQ response \(status 0x4, opaque \d+\)$/m);
      expect(out).toMatch(/^PASS\s+takeover\s+/m);
      expect(out).toMatch(/\d+ passed, [12] failed, 0 skipped\n$/);
      expect(code).toBe(1);
    } finally {
      relay.close();
    }
  }, 60_000);

  requireTool('tshark', findTshark())(
    '--pcap: a capture with a window overrun fails that rule (table and JSON), exit 1',
    async () => {
      const built = buildConversation({ window: 300, streams: [{ vb: 0, snapshots: [5, 5], close: true }] });
      const frames = built.frames.filter((t) => t.frame.opcode !== 0x5d);
      const file = path.join(dir, 'overrun.pcap');
      const segments = frames.map((t) => ({
        from: t.from === 'consumer' ? ('client' as const) : ('server' as const),
        data: Buffer.from(t.frame.bytes),
      }));
      fs.writeFileSync(file, tcpConversationPcap(segments, { serverPort: 11_420 }).bytes);
      const table = await conform(['--pcap', file, '--port', '11420']);
      expect(table.code).toBe(1);
      expect(table.out).toMatch(/^FAIL\s+flow-control-window\s+/m);
      expect(table.out).toMatch(/^\s+#\d+ tcp 0 P→C MUTATION vb 0 opaque \d+ seqno \d+/m);
      const json = await conform(['--pcap', file, '--port', '11420', '--json']);
      const report = JSON.parse(json.out) as KitReport;
      expect(report.results.filter((r) => r.outcome === 'fail').map((r) => r.id)).toEqual([
        'flow-control-window',
      ]);
    },
    60_000,
  );

  requireTool('tshark', findTshark())(
    'without a target it still checks the samples against Wireshark, as before',
    async () => {
      const keep = path.join(dir, 'samples.pcap');
      const { code, out } = await conform(['--keep-pcap', keep]);
      expect(out).toMatch(/tshark decoded \d+ couchbase PDUs for \d+ samples/);
      expect(out).toMatch(/conformance: clean\n$/);
      expect(fs.statSync(keep).size).toBeGreaterThan(1000);
      expect(code).toBe(0);
    },
    120_000,
  );

  it('refuses two targets at once', async () => {
    const { code, err } = await conform(['--producer', '127.0.0.1:1', '--consumer', '127.0.0.1:2']);
    expect(code).not.toBe(0);
    expect(err).toMatch(/one of --producer, --consumer, --pcap/);
  });
});
