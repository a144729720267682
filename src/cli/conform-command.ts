import type { Command } from 'commander';
import { checkWithTshark, findTshark } from '../conformance/index.js';
import { messageSamples } from '../conformance/samples.js';

/** `dcpx conform`: Wireshark's couchbase dissector against one of every message dcpx encodes. */
export function registerConform(program: Command): void {
  program
    .command('conform')
    .description("decode one of every message dcpx encodes with Wireshark's couchbase dissector (tshark)")
    .option('--tshark <path>', 'tshark to run (default: $DCPX_TSHARK, else tshark on PATH)')
    .option('--pcap <file>', 'keep the capture of the samples (open it in Wireshark, Decode As couchbase)')
    .option('--port <port>', 'server port of the capture, decoded as couchbase', '11299')
    .option('-v, --verbose', 'print the couchbase fields tshark decoded for every sample')
    .action(async (opts: { tshark?: string; pcap?: string; port: string; verbose?: boolean }) => {
      const tshark = opts.tshark ?? findTshark();
      if (!tshark)
        throw new Error('tshark is not installed (Debian: apt-get install tshark); or pass --tshark');
      const samples = messageSamples();
      const report = await checkWithTshark(samples, {
        tshark,
        serverPort: Number(opts.port),
        ...(opts.pcap ? { keepPcap: opts.pcap } : {}),
      });
      const out = (line: string): void => {
        process.stdout.write(`${line}\n`);
      };
      out(`tshark decoded ${report.pdus} couchbase PDUs for ${report.samples} samples`);
      if (opts.verbose) {
        for (const f of report.frames) {
          out(`  packet ${f.packet}: ${f.sample}`);
          for (const [name, values] of f.fields) {
            if (name.startsWith('couchbase.')) out(`      ${name} = ${values.join(', ')}`);
          }
        }
      }
      for (const k of report.limitations) {
        const what = [...k.deviations, ...k.undecoded.map((u) => `${u} not decoded`)].join('; ');
        out(`  known dissector limitation  ${k.sample}: ${what}`);
      }
      for (const p of report.problems) out(`  PROBLEM  ${p}`);
      if (opts.pcap) out(`capture kept in ${opts.pcap} (server port ${opts.port})`);
      out(
        report.problems.length === 0
          ? 'conformance: clean'
          : `conformance: ${report.problems.length} problems`,
      );
      process.exitCode = report.problems.length === 0 ? 0 : 1;
    });
}
