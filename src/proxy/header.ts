import { HEADER_LENGTH, Magic } from '../protocol/index.js';

// Header fields read straight from a frame's bytes (dcp-spec §1), for the proxy's header-only fast
// path: the decoder has validated the header already, and no Frame is made for a frame passed this way.

/** A request header (0x80, or 0x08 with framing extras): its vBucket field is a vBucket. */
export function isRequestAt(buffer: Buffer, offset: number): boolean {
  const magic = buffer[offset]!;
  return magic === Magic.Request || magic === Magic.AltRequest;
}

export function opcodeAt(buffer: Buffer, offset: number): number {
  return buffer[offset + 1]!;
}

export function vbucketAt(buffer: Buffer, offset: number): number {
  return (buffer[offset + 6]! << 8) | buffer[offset + 7]!;
}

export function opaqueAt(buffer: Buffer, offset: number): number {
  return (
    buffer[offset + 12]! * 0x1000000 +
    ((buffer[offset + 13]! << 16) | (buffer[offset + 14]! << 8) | buffer[offset + 15]!)
  );
}

/** The whole frame's length on the wire (header and body). */
export function frameLengthAt(buffer: Buffer, offset: number): number {
  return (
    HEADER_LENGTH +
    buffer[offset + 8]! * 0x1000000 +
    ((buffer[offset + 9]! << 16) | (buffer[offset + 10]! << 8) | buffer[offset + 11]!)
  );
}
