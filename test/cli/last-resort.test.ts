import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { INTERNAL_ERROR_EXIT, installLastResort } from '../../src/cli/last-resort.js';

class FakeProcess extends EventEmitter {
  exits: number[] = [];
  exit(code: number): void {
    this.exits.push(code);
  }
}

describe('the CLI last-resort handler', () => {
  it('turns an unhandled rejection into one stderr line and a non-zero exit', () => {
    const proc = new FakeProcess();
    const lines: string[] = [];
    installLastResort('dcpx move', proc, (line) => lines.push(line));
    proc.emit(
      'unhandledRejection',
      Object.assign(new Error('STREAM_END timed out'), { code: 'DCPX_ERR_TIMEOUT' }),
    );
    expect(lines).toEqual([
      'dcpx move: internal error (unhandled rejection): STREAM_END timed out [DCPX_ERR_TIMEOUT]\n',
    ]);
    expect(proc.exits).toEqual([INTERNAL_ERROR_EXIT]);
  });

  it('reports only the first of several crashes', () => {
    const proc = new FakeProcess();
    const lines: string[] = [];
    installLastResort('dcpx proxy', proc, (line) => lines.push(line));
    proc.emit('uncaughtException', new TypeError('x is undefined'));
    proc.emit('unhandledRejection', 'a string');
    expect(lines).toEqual(['dcpx proxy: internal error (uncaught exception): x is undefined\n']);
    expect(proc.exits).toEqual([INTERNAL_ERROR_EXIT]);
  });
});
