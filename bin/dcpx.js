#!/usr/bin/env node
import { holdSignals } from '../dist/src/cli/held-signals.js';

// a signal to `dcpx move` while the modules load is kept for the move (it stops cleanly), not a kill
if (process.argv[2] === 'move') holdSignals();
const { main } = await import('../dist/src/cli/main.js');

main(process.argv).catch((error) => {
  process.stderr.write(`dcpx: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
