import type { Command } from 'commander';
import { catalogue, checkWithTshark, findTshark } from '../conformance/index.js';

/** `dcpx conform`: Wireshark's dissector against one of every message dcpx sends (live loopback capture). */
export function registerConform(program: Command): void {
  program
    .command('conform')
    .description("decode one of every message dcpx sends with Wireshark's couchbase dissector (tshark)")
    .action(async () => {
      const tshark = await findTshark();
      if (!tshark) throw new Error('tshark is not installed (Debian: apt-get install tshark)');
      const samples = catalogue();
      const report = await checkWithTshark(samples, tshark);
      process.stdout.write(`tshark decoded ${report.decoded} of ${samples.length} messages\n`);
      for (const k of report.known)
        process.stdout.write(`  known dissector quirk  ${k.sample}: ${k.limitation} (${k.detail})\n`);
      for (const x of report.problems)
        process.stdout.write(`  PROBLEM  ${x.sample}: ${x.kind}: ${x.detail}\n`);
      process.stdout.write(report.problems.length === 0 ? 'conformance: clean\n' : 'conformance: PROBLEMS\n');
      process.exit(report.problems.length === 0 ? 0 : 1);
    });
}
