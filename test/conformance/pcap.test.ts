import { describe, expect, it } from 'vitest';
import {
  internetChecksum,
  MAX_TCP_PAYLOAD,
  type Segment,
  tcpConversationPcap,
  tcpPseudoHeaderSum,
} from '../../src/conformance/pcap.js';

// The pcap writer read back byte by byte, without tshark: classic libpcap over Ethernet, IPv4 and TCP
// headers whose checksums verify, and sequence/acknowledgement numbers that follow the bytes each side sent.

interface Packet {
  from: 'client' | 'server';
  flags: number;
  seq: number;
  ack: number;
  payload: Buffer;
  ipChecksumOk: boolean;
  tcpChecksumOk: boolean;
}

const CLIENT_PORT = 50_001;
const SERVER_PORT = 11_211;

function readPcap(file: Buffer): { linkType: number; packets: Packet[] } {
  expect(file.readUInt32LE(0)).toBe(0xa1b2c3d4);
  expect([file.readUInt16LE(4), file.readUInt16LE(6)]).toEqual([2, 4]);
  const packets: Packet[] = [];
  let at = 24;
  while (at < file.length) {
    const included = file.readUInt32LE(at + 8);
    expect(file.readUInt32LE(at + 12)).toBe(included);
    const frame = file.subarray(at + 16, at + 16 + included);
    at += 16 + included;
    expect(frame.readUInt16BE(12)).toBe(0x0800);
    const ip = frame.subarray(14, 34);
    expect(ip[0]).toBe(0x45);
    expect(ip[9]).toBe(6);
    expect(ip.readUInt16BE(2)).toBe(frame.length - 14);
    const tcp = frame.subarray(34);
    const dataOffset = (tcp[12]! >> 4) * 4;
    const sourcePort = tcp.readUInt16BE(0);
    expect([sourcePort, tcp.readUInt16BE(2)].sort()).toEqual([SERVER_PORT, CLIENT_PORT].sort());
    packets.push({
      from: sourcePort === CLIENT_PORT ? 'client' : 'server',
      flags: tcp[13]!,
      seq: tcp.readUInt32BE(4),
      ack: tcp.readUInt32BE(8),
      payload: tcp.subarray(dataOffset),
      ipChecksumOk: internetChecksum(ip) === 0,
      tcpChecksumOk:
        internetChecksum(tcp, tcpPseudoHeaderSum(ip.subarray(12, 16), ip.subarray(16, 20), tcp.length)) === 0,
    });
  }
  return { linkType: file.readUInt32LE(20), packets };
}

const SYN = 0x02;
const FIN = 0x01;
const ACK = 0x10;
const PSH = 0x08;

const segments: Segment[] = [
  { from: 'client', data: Buffer.from('hello server') },
  { from: 'server', data: Buffer.from('hello client, odd length') },
  { from: 'server', data: Buffer.alloc(3_000, 0xab) },
  { from: 'client', data: Buffer.from([0xff]) },
];

describe('tcpConversationPcap', () => {
  const pcap = tcpConversationPcap(segments, {
    clientPort: CLIENT_PORT,
    serverPort: SERVER_PORT,
    maxPayload: 1_000,
    clientIsn: 0xffff_fff0, // wraps around 2^32 within the conversation
  });
  const { linkType, packets } = readPcap(pcap.bytes);

  it('writes a classic libpcap file of Ethernet frames', () => {
    expect(linkType).toBe(1);
    expect(packets).toHaveLength(pcap.packets);
  });

  it('gives every IPv4 header and TCP segment a checksum that verifies', () => {
    expect(packets.every((p) => p.ipChecksumOk && p.tcpChecksumOk)).toBe(true);
  });

  it('opens with SYN, SYN/ACK, ACK and closes with FIN/ACK both ways and a last ACK', () => {
    expect(packets.slice(0, 3).map((p) => [p.from, p.flags])).toEqual([
      ['client', SYN],
      ['server', SYN | ACK],
      ['client', ACK],
    ]);
    expect(packets.slice(-3).map((p) => [p.from, p.flags])).toEqual([
      ['client', FIN | ACK],
      ['server', FIN | ACK],
      ['client', ACK],
    ]);
  });

  it('numbers each side’s bytes in sequence and acknowledges everything the other side sent', () => {
    const next = { client: packets[0]!.seq, server: packets[1]!.seq };
    for (const p of packets) {
      expect(p.seq).toBe(next[p.from]);
      const other = p.from === 'client' ? 'server' : 'client';
      if (p.flags & ACK) expect(p.ack).toBe(next[other]);
      next[p.from] = (next[p.from] + p.payload.length + (p.flags & (SYN | FIN) ? 1 : 0)) >>> 0;
    }
    expect(packets[0]!.seq).toBe(0xffff_fff0);
  });

  it('carries each side’s segments in order, splitting the long one, each answered by a bare ACK', () => {
    for (const side of ['client', 'server'] as const) {
      const sent = Buffer.concat(packets.filter((p) => p.from === side).map((p) => p.payload));
      const given = Buffer.concat(segments.filter((s) => s.from === side).map((s) => s.data));
      expect(sent.equals(given), side).toBe(true);
    }
    const data = packets.filter((p) => p.payload.length > 0);
    expect(data.map((p) => p.payload.length)).toEqual([12, 24, 1_000, 1_000, 1_000, 1]);
    expect(data.every((p) => p.flags === (PSH | ACK))).toBe(true);
    for (const number of pcap.segmentPackets) {
      const after = packets[number]!; // the packet after the one that ends a segment (numbers are 1-based)
      expect([after.flags, after.payload.length]).toEqual([ACK, 0]);
    }
  });

  it('points each segment at the packet that carries its last byte', () => {
    segments.forEach((segment, i) => {
      const last = packets[pcap.segmentPackets[i]! - 1]!;
      expect(last.from).toBe(segment.from);
      expect(segment.data.subarray(segment.data.length - last.payload.length).equals(last.payload)).toBe(
        true,
      );
    });
    // 1–3 handshake; 4 (ACK 5); 6 (ACK 7); 8, 9, 10 (ACK 11); 12
    expect(pcap.segmentPackets).toEqual([4, 6, 10, 12]);
  });

  it('refuses what it cannot lay out', () => {
    expect(() => tcpConversationPcap([{ from: 'client', data: Buffer.alloc(0) }])).toThrow(/empty segment/);
    expect(() => tcpConversationPcap([], { serverPort: 70_000 })).toThrow(/not a port/);
    expect(() => tcpConversationPcap([], { maxPayload: MAX_TCP_PAYLOAD + 1 })).toThrow(/maxPayload/);
    expect(() => tcpConversationPcap([], { clientAddress: '127.0.0' })).toThrow(/IPv4/);
  });
});
