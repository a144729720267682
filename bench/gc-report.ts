import { GC_LINE, observeGc } from './gc-pauses.js';

// Imported with `node --import` into a process the bench starts: one `dcpx-gc` line per GC pause on
// stderr (see gc-pauses.ts). The observer does not keep the process alive.
observeGc((pause) => process.stderr.write(`${GC_LINE}${JSON.stringify(pause)}\n`));
