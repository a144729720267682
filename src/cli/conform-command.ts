import type { Command } from 'commander';
import { runConsumerKit } from '../conformance/consumer-kit.js';
import { checkWithTshark, findTshark } from '../conformance/index.js';
import { checkCapture } from '../conformance/pcap-check.js';
import { runProducerKit } from '../conformance/producer-kit.js';
import {
  failed,
  formatJson,
  formatTable,
  type KitReport,
  type ScenarioResult,
} from '../conformance/report.js';
import { messageSamples } from '../conformance/samples.js';
import { parseAddress } from '../protocol/transport/index.js';

interface ConformFlags {
  tshark?: string;
  keepPcap?: string;
  port?: string;
  verbose?: boolean;
  producer?: string;
  consumer?: string;
  pcap?: string;
  user?: string;
  password?: string;
  bucket?: string;
  vbuckets: string;
  json?: boolean;
  timeoutMs: string;
  quietMs: string;
  noopInterval: string;
  window: string;
}

/**
 * `dcpx conform`: without a target, Wireshark's couchbase dissector against one of every message dcpx
 * encodes; with --producer, --consumer or --pcap, the conformance kit against someone's DCP endpoint.
 */
export function registerConform(program: Command): void {
  program
    .command('conform')
    .description(
      "check a DCP endpoint (--producer, --consumer) or a capture (--pcap) against the DCP rules; without them, decode one of every message dcpx encodes with Wireshark's couchbase dissector (tshark)",
    )
    .option(
      '--producer <host:port>',
      'run the producer scenarios against this DCP producer (the kit is the consumer)',
    )
    .option(
      '--consumer <host:port>',
      'run the consumer scenarios against this DCP consumer (the kit is the producer)',
    )
    .option('--pcap <file>', 'check the DCP conversations in this capture (pcap or pcapng, read by tshark)')
    .option('--user <user>', 'SASL user for --producer/--consumer')
    .option('--password <password>', 'SASL password')
    .option('--bucket <name>', 'Couchbase Server: the bucket to select after authenticating')
    .option(
      '--vbuckets <list>',
      'vBuckets the kit may use, e.g. 0-1 or 5,9: the first carries the data, the last a takeover (it ends dead on a producer, active on a consumer)',
      '0-1',
    )
    .option('--json', 'print the results as JSON')
    .option('--timeout-ms <ms>', 'longest wait for one expected frame', '5000')
    .option('--quiet-ms <ms>', 'silence that counts as "nothing more comes"', '300')
    .option('--noop-interval <seconds>', 'NOOP interval asked of a producer', '1')
    .option('--window <bytes>', 'connection_buffer_size asked of a producer', '2048')
    .option('--tshark <path>', 'tshark to run (default: $DCPX_TSHARK, else tshark on PATH)')
    .option(
      '--keep-pcap <file>',
      'without a target: keep the capture of the samples (open it in Wireshark, Decode As couchbase)',
    )
    .option(
      '--port <port>',
      'with --pcap: only conversations on this port; without a target: server port of the samples capture (default 11299)',
    )
    .option('-v, --verbose', 'without a target: print the couchbase fields tshark decoded for every sample')
    .action(async (opts: ConformFlags) => {
      const targets = [opts.producer, opts.consumer, opts.pcap].filter((t) => t !== undefined);
      if (targets.length > 1) throw new Error('give one of --producer, --consumer, --pcap');
      if (targets.length === 0) return samplesCheck(opts);
      const live = {
        user: opts.user,
        password: opts.password,
        bucket: opts.bucket,
        vbuckets: parseList(opts.vbuckets),
        timeoutMs: Number(opts.timeoutMs),
        quietMs: Number(opts.quietMs),
      };
      const tty = process.stdout.isTTY === true && !opts.json;
      const progress = (r: ScenarioResult) => {
        if (tty) process.stderr.write(`  ${r.outcome.padEnd(4)} ${r.id}\n`);
      };
      let report: KitReport;
      if (opts.producer) {
        report = await runProducerKit({
          ...parseAddress(opts.producer),
          ...live,
          noopIntervalSeconds: Number(opts.noopInterval),
          windowBytes: Number(opts.window),
          onResult: progress,
        });
      } else if (opts.consumer) {
        report = await runConsumerKit({ ...parseAddress(opts.consumer), ...live, onResult: progress });
      } else {
        const tshark = opts.tshark ?? findTshark();
        if (!tshark)
          throw new Error('tshark is not installed (Debian: apt-get install tshark); or pass --tshark');
        report = await checkCapture(opts.pcap!, {
          tshark,
          ...(opts.port ? { ports: [Number(opts.port)] } : {}),
        });
      }
      process.stdout.write(opts.json ? formatJson(report) : formatTable(report));
      process.exitCode = failed(report).length === 0 ? 0 : 1;
    });
}

/** "0-3,7" → [0, 1, 2, 3, 7], in the order given. */
export function parseList(text: string): number[] {
  const out: number[] = [];
  for (const part of text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new Error(`--vbuckets: "${part}" is not N or N-M`);
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (to < from || to > 0xffff) throw new Error(`--vbuckets: "${part}" is not a range of vBuckets`);
    for (let vb = from; vb <= to; vb++) if (!out.includes(vb)) out.push(vb);
  }
  if (out.length === 0) throw new Error('--vbuckets: no vBucket given');
  return out;
}

async function samplesCheck(opts: ConformFlags): Promise<void> {
  const tshark = opts.tshark ?? findTshark();
  if (!tshark) throw new Error('tshark is not installed (Debian: apt-get install tshark); or pass --tshark');
  const port = opts.port ?? '11299';
  const samples = messageSamples();
  const report = await checkWithTshark(samples, {
    tshark,
    serverPort: Number(port),
    ...(opts.keepPcap ? { keepPcap: opts.keepPcap } : {}),
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
  if (opts.keepPcap) out(`capture kept in ${opts.keepPcap} (server port ${port})`);
  out(
    report.problems.length === 0 ? 'conformance: clean' : `conformance: ${report.problems.length} problems`,
  );
  process.exitCode = report.problems.length === 0 ? 0 : 1;
}
