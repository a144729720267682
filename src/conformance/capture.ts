import { spawn } from 'node:child_process';
import { decodePcap, EXPERT_SEVERITY, findTshark, type PduFields } from './tshark.js';

// Live captures of real conversations on loopback (needs capture rights: root or CAP_NET_RAW), for the
// end-to-end tests that watch dcpx talk; `dcpx conform` writes its own pcap and needs none.

/** Runs `during` while tshark captures loopback traffic of `ports` into `file`. */
export async function captureWhile<T>(
  ports: readonly number[],
  file: string,
  during: () => Promise<T>,
  tshark = findTshark() ?? 'tshark',
): Promise<T> {
  const filter = ports.map((port) => `tcp port ${port}`).join(' or ');
  const capture = spawn(tshark, ['-i', 'lo', '-f', filter, '-w', file, '-q'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  try {
    let err = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`tshark did not start capturing: ${err}`)), 15_000);
      capture.stderr!.on('data', (d) => {
        err += d;
        if (/Capturing on/.test(err)) {
          clearTimeout(timer);
          resolve();
        }
      });
      capture.once('exit', (code) => reject(new Error(`tshark exited ${code}: ${err}`)));
    });
    await sleep(500); // "Capturing on" comes a moment before the first packet is seen
    const result = await during();
    await sleep(300);
    return result;
  } finally {
    const exited = new Promise((r) => capture.once('exit', r));
    capture.kill('SIGINT');
    await exited;
  }
}

/**
 * Decodes a live capture: every couchbase PDU in order (with its packet's ports as `tcp.srcport` and
 * `tcp.dstport`), the expert items by PDU index, and the PDUs whose packet was malformed.
 */
export async function decodeCapture(
  file: string,
  port: number | readonly number[],
  tshark = findTshark() ?? 'tshark',
): Promise<{
  pdus: PduFields[];
  experts: { pdu: number; message: string; severity: number; field: string }[];
  malformed: number[];
}> {
  const packets = await decodePcap(file, port, { tshark, verifyChecksums: false });
  const pdus: PduFields[] = [];
  const experts: { pdu: number; message: string; severity: number; field: string }[] = [];
  const malformed: number[] = [];
  for (const packet of packets) {
    for (const pdu of packet.pdus) {
      const fields: PduFields = new Map(pdu.fields);
      fields.set('tcp.srcport', [String(packet.srcPort ?? '')]);
      fields.set('tcp.dstport', [String(packet.dstPort ?? '')]);
      for (const x of pdu.experts) {
        experts.push({
          pdu: pdus.length,
          message: x.message,
          severity: EXPERT_SEVERITY[x.severity],
          field: x.field,
        });
      }
      pdus.push(fields);
    }
    if (packet.malformed && packet.pdus.length > 0) malformed.push(pdus.length - 1);
  }
  return { pdus, experts, malformed };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
