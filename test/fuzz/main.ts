import fc from 'fast-check';
import { frameBytes } from '../helpers/arbitraries.js';
import { type FuzzReport, fuzzFrames, seedCorpus } from './frame-fuzzer.js';

// `npm run fuzz [-- --cases N] [--seed S]`: 10^6 mutated valid frames (by default) through the
// FrameDecoder and every message decoder. Prints the count, the crashes, the hits per decoder and the
// time; exits 1 on any crash (an exception other than ProtocolError, or an absurd decoded size).

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  if (at < 0) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`--${name} needs a whole number`);
  return value;
}

const cases = option('cases', 1_000_000);
const seed = option('seed', Date.now() % 0x1_0000_0000);
const corpus = seedCorpus(fc.sample(frameBytes, { numRuns: 2_000, seed }));
process.stdout.write(
  `fuzz: ${cases} cases, seed ${seed}, ${corpus.samples.length} catalogue samples + ${corpus.random.length} random valid frames\n`,
);

const report: FuzzReport = fuzzFrames({
  cases,
  seed,
  corpus,
  progress: {
    every: 100_000,
    report: (r) =>
      process.stderr.write(
        `  ${r.cases} cases, ${r.frames} frames decoded, ${r.crashCount} crashes, ${(r.ms / 1000).toFixed(1)} s\n`,
      ),
  },
});

const rows = (table: Record<string, number>) =>
  Object.entries(table)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `  ${k.padEnd(34)} ${n}`)
    .join('\n');
process.stdout.write(
  [
    `cases ${report.cases}, frames through message decoders ${report.frames}, crashes ${report.crashCount}`,
    `time ${(report.ms / 1000).toFixed(1)} s (${Math.round(report.cases / (report.ms / 1000))} cases/s), slowest case ${report.slowestCaseMs.toFixed(1)} ms`,
    'FrameDecoder outcomes:',
    rows(report.framer),
    'mutations applied:',
    rows(report.mutations),
    'message decoders (accepted / rejected with ProtocolError / wrong message):',
    ...Object.entries(report.decoders)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, c]) => `  ${name.padEnd(34)} ${c.accepted} / ${c.rejected} / ${c.wrongMessage}`),
    '',
  ].join('\n'),
);
for (const c of report.crashes) {
  process.stdout.write(
    `CRASH case ${c.caseIndex} (seed ${c.seed}) in ${c.where} after [${c.mutations.join(', ')}]: ${c.error}\n  input ${c.input}\n${c.stack ?? ''}\n`,
  );
}
process.exit(report.crashCount === 0 ? 0 : 1);
