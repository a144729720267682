// A classic libpcap file holding one TCP conversation between two endpoints, made from the bytes each side
// sends: what Wireshark would have captured on `lo`, without capture rights. Formats: libpcap "classic"
// (pcap-savefile(5)), LINKTYPE_ETHERNET (1), IPv4 (RFC 791), TCP (RFC 9293), checksums (RFC 1071).
//
// | layer    | size | fields we set                                                                   |
// | pcap rec |   16 | ts_sec, ts_usec, incl_len, orig_len (little-endian, like the file header)       |
// | Ethernet |   14 | dst MAC, src MAC (locally administered, one per side), ethertype 0x0800         |
// | IPv4     |   20 | 0x45, total length, id (per side, +1 per packet), DF, TTL 64, proto 6, checksum |
// | TCP      |   20 | ports, seq, ack, data offset 5, flags, window, checksum over the pseudo-header  |
//
// The conversation: SYN, SYN/ACK, ACK; then each segment from its side with PSH/ACK (one memcached frame
// per segment, so one PDU per packet unless it is longer than `maxPayload`), each answered by a bare ACK
// from the other side; then FIN/ACK from the client, FIN/ACK from the server and the last ACK.

export type Side = 'client' | 'server';

export interface Segment {
  from: Side;
  data: Buffer;
}

export interface PcapOptions {
  clientAddress?: string;
  serverAddress?: string;
  clientPort?: number;
  serverPort?: number;
  /** Capture time of the first packet, in ms since the epoch (the packets follow 100 µs apart). */
  startTimeMs?: number;
  /** Largest TCP payload per packet; a longer segment goes out as several packets. */
  maxPayload?: number;
  clientIsn?: number;
  serverIsn?: number;
}

export interface Pcap {
  /** The whole file. */
  bytes: Buffer;
  /** For each segment given, the 1-based number of the packet that carries its last byte. */
  segmentPackets: number[];
  /** Packets in the file. */
  packets: number;
  clientPort: number;
  serverPort: number;
}

const LINKTYPE_ETHERNET = 1;
const SNAPLEN = 262_144;
const ETHERNET = 14;
const IPV4 = 20;
const TCP = 20;
/** The largest IPv4 packet (65535) minus the IPv4 and TCP headers. */
export const MAX_TCP_PAYLOAD = 0xffff - IPV4 - TCP;

const TcpFlag = { FIN: 0x01, SYN: 0x02, PSH: 0x08, ACK: 0x10 } as const;

const MAC: Record<Side, Buffer> = {
  client: Buffer.from([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]),
  server: Buffer.from([0x02, 0x00, 0x00, 0x00, 0x00, 0x02]),
};

/** RFC 1071 ones'-complement sum of 16-bit words (an odd last byte is padded with zero), folded. */
export function onesComplementSum(data: Buffer, initial = 0): number {
  let sum = initial;
  const even = data.length & ~1;
  for (let i = 0; i < even; i += 2) sum += data.readUInt16BE(i);
  if (data.length & 1) sum += data[data.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** The Internet checksum of `data`: 0 when `data` already holds its correct checksum. */
export function internetChecksum(data: Buffer, initial = 0): number {
  return ~onesComplementSum(data, initial) & 0xffff;
}

/** The TCP pseudo-header sum (source, destination, protocol 6, TCP length) that starts a TCP checksum. */
export function tcpPseudoHeaderSum(source: Buffer, destination: Buffer, tcpLength: number): number {
  const pseudo = Buffer.alloc(12);
  source.copy(pseudo, 0);
  destination.copy(pseudo, 4);
  pseudo[9] = 6;
  pseudo.writeUInt16BE(tcpLength, 10);
  return onesComplementSum(pseudo);
}

function ipv4Bytes(address: string): Buffer {
  const parts = address.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new RangeError(`${address} is not a dotted IPv4 address`);
  }
  return Buffer.from(parts);
}

function checkPort(name: string, port: number): number {
  if (!Number.isInteger(port) || port < 1 || port > 0xffff)
    throw new RangeError(`${name} ${port} is not a port`);
  return port;
}

interface Endpoint {
  ip: Buffer;
  port: number;
  /** Next sequence number this side sends. */
  seq: number;
  ipId: number;
}

/** Lays `segments` out as a TCP conversation in a classic pcap file. */
export function tcpConversationPcap(segments: readonly Segment[], options: PcapOptions = {}): Pcap {
  const maxPayload = options.maxPayload ?? MAX_TCP_PAYLOAD;
  if (!Number.isInteger(maxPayload) || maxPayload < 1 || maxPayload > MAX_TCP_PAYLOAD) {
    throw new RangeError(`maxPayload ${maxPayload} is not 1..${MAX_TCP_PAYLOAD}`);
  }
  const side: Record<Side, Endpoint> = {
    client: {
      ip: ipv4Bytes(options.clientAddress ?? '127.0.0.1'),
      port: checkPort('clientPort', options.clientPort ?? 50_123),
      seq: (options.clientIsn ?? 0x1000_0000) >>> 0,
      ipId: 0x0100,
    },
    server: {
      ip: ipv4Bytes(options.serverAddress ?? '127.0.0.1'),
      port: checkPort('serverPort', options.serverPort ?? 11_299),
      seq: (options.serverIsn ?? 0x2000_0000) >>> 0,
      ipId: 0x0200,
    },
  };
  const records: Buffer[] = [fileHeader()];
  let micros = BigInt(options.startTimeMs ?? Date.UTC(2024, 0, 1)) * 1000n;
  let packets = 0;

  const send = (from: Side, flags: number, payload: Buffer = Buffer.alloc(0)): void => {
    const me = side[from];
    const peer = side[other(from)];
    const ack = flags & TcpFlag.ACK ? peer.seq : 0;
    const packet = ethernetIpTcp(me, peer, from, ack, flags, payload);
    records.push(recordHeader(micros, packet.length), packet);
    packets++;
    micros += 100n;
    me.ipId = (me.ipId + 1) & 0xffff;
    // SYN and FIN take one sequence number each (RFC 9293 §3.4)
    me.seq = (me.seq + payload.length + (flags & (TcpFlag.SYN | TcpFlag.FIN) ? 1 : 0)) >>> 0;
  };

  send('client', TcpFlag.SYN);
  send('server', TcpFlag.SYN | TcpFlag.ACK);
  send('client', TcpFlag.ACK);
  const segmentPackets: number[] = [];
  for (const segment of segments) {
    if (segment.data.length === 0) throw new RangeError('an empty segment carries nothing');
    for (let at = 0; at < segment.data.length; at += maxPayload) {
      send(segment.from, TcpFlag.PSH | TcpFlag.ACK, segment.data.subarray(at, at + maxPayload));
    }
    segmentPackets.push(packets);
    send(other(segment.from), TcpFlag.ACK);
  }
  send('client', TcpFlag.FIN | TcpFlag.ACK);
  send('server', TcpFlag.FIN | TcpFlag.ACK);
  send('client', TcpFlag.ACK);
  return {
    bytes: Buffer.concat(records),
    segmentPackets,
    packets,
    clientPort: side.client.port,
    serverPort: side.server.port,
  };
}

function fileHeader(): Buffer {
  const h = Buffer.alloc(24);
  h.writeUInt32LE(0xa1b2c3d4, 0); // microsecond timestamps
  h.writeUInt16LE(2, 4);
  h.writeUInt16LE(4, 6);
  h.writeInt32LE(0, 8); // thiszone
  h.writeUInt32LE(0, 12); // sigfigs
  h.writeUInt32LE(SNAPLEN, 16);
  h.writeUInt32LE(LINKTYPE_ETHERNET, 20);
  return h;
}

function recordHeader(micros: bigint, length: number): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(Number(micros / 1_000_000n), 0);
  h.writeUInt32LE(Number(micros % 1_000_000n), 4);
  h.writeUInt32LE(length, 8); // the whole packet is in the file
  h.writeUInt32LE(length, 12);
  return h;
}

function ethernetIpTcp(
  me: Endpoint,
  peer: Endpoint,
  from: Side,
  ack: number,
  flags: number,
  payload: Buffer,
): Buffer {
  const packet = Buffer.alloc(ETHERNET + IPV4 + TCP + payload.length);
  MAC[other(from)].copy(packet, 0);
  MAC[from].copy(packet, 6);
  packet.writeUInt16BE(0x0800, 12);

  const ip = packet.subarray(ETHERNET, ETHERNET + IPV4);
  ip[0] = 0x45; // version 4, 5 words of header
  ip.writeUInt16BE(IPV4 + TCP + payload.length, 2);
  ip.writeUInt16BE(me.ipId, 4);
  ip.writeUInt16BE(0x4000, 6); // don't fragment
  ip[8] = 64; // TTL
  ip[9] = 6; // TCP
  me.ip.copy(ip, 12);
  peer.ip.copy(ip, 16);
  ip.writeUInt16BE(internetChecksum(ip), 10);

  const tcp = packet.subarray(ETHERNET + IPV4);
  tcp.writeUInt16BE(me.port, 0);
  tcp.writeUInt16BE(peer.port, 2);
  tcp.writeUInt32BE(me.seq >>> 0, 4);
  tcp.writeUInt32BE(ack >>> 0, 8);
  tcp[12] = (TCP / 4) << 4; // data offset in 32-bit words
  tcp[13] = flags;
  tcp.writeUInt16BE(0xffff, 14); // window
  payload.copy(tcp, TCP);
  tcp.writeUInt16BE(internetChecksum(tcp, tcpPseudoHeaderSum(me.ip, peer.ip, tcp.length)), 16);
  return packet;
}

function other(side: Side): Side {
  return side === 'client' ? 'server' : 'client';
}
