import { HEADER_LENGTH } from '../constants.js';

/**
 * Counts the frames of an outbound byte stream written as pieces (header and payload apart, or many
 * frames in one buffer): it reads each header's body length and skips the body without touching it.
 */
export class FrameCounter {
  private readonly header = Buffer.alloc(HEADER_LENGTH);
  private headerFilled = 0;
  private bodyLeft = 0;
  private count = 0;

  get frames(): number {
    return this.count;
  }

  add(chunk: Buffer): void {
    let pos = 0;
    const length = chunk.length;
    while (pos < length) {
      if (this.headerFilled < HEADER_LENGTH) {
        if (this.headerFilled === 0 && length - pos >= HEADER_LENGTH) {
          this.bodyLeft = chunk.readUInt32BE(pos + 8);
          this.headerFilled = HEADER_LENGTH;
          pos += HEADER_LENGTH;
        } else {
          // a header that spans pieces: gather it
          const take = Math.min(HEADER_LENGTH - this.headerFilled, length - pos);
          chunk.copy(this.header, this.headerFilled, pos, pos + take);
          this.headerFilled += take;
          pos += take;
          if (this.headerFilled < HEADER_LENGTH) return;
          this.bodyLeft = this.header.readUInt32BE(8);
        }
      } else {
        const take = Math.min(this.bodyLeft, length - pos);
        this.bodyLeft -= take;
        pos += take;
      }
      if (this.bodyLeft === 0) {
        this.count++;
        this.headerFilled = 0;
      }
    }
  }
}
