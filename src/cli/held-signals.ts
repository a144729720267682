// `dcpx move` answers SIGTERM and SIGINT from its first instant: the bin holds the signals that come
// while the modules load (a kill by the signal then), and the move command takes them over once its
// own handlers are in place. A tiny module on purpose: it loads before everything else.

const held: NodeJS.Signals[] = [];
const hold = (signal: NodeJS.Signals) => {
  held.push(signal);
};

/** Keeps SIGTERM and SIGINT from ending the process until `releaseHeldSignals`. */
export function holdSignals(): void {
  process.on('SIGTERM', hold);
  process.on('SIGINT', hold);
}

/** Stops holding; returns the signals held so far, in order (the caller handles them). */
export function releaseHeldSignals(): NodeJS.Signals[] {
  process.off('SIGTERM', hold);
  process.off('SIGINT', hold);
  return held.splice(0);
}
