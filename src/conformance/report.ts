// The kit's results: one line per scenario (pass / fail / skip, a one-line reason, the frames involved),
// as a table for a terminal or as JSON for CI.

export type Outcome = 'pass' | 'fail' | 'skip';

export interface ScenarioResult {
  id: string;
  title: string;
  /** The dcp-spec section(s) the scenario checks. */
  spec: string;
  outcome: Outcome;
  reason: string;
  /** Frame numbers involved (packet numbers for a capture), with a short description each. */
  frames: { seq: number; what: string }[];
}

export interface KitReport {
  target: string;
  mode: 'producer' | 'consumer' | 'pcap';
  results: ScenarioResult[];
}

export function failed(report: KitReport): ScenarioResult[] {
  return report.results.filter((r) => r.outcome === 'fail');
}

/** The table printed on a terminal. */
export function formatTable(report: KitReport): string {
  const rows = report.results.map((r) => [r.outcome.toUpperCase(), r.id, r.spec, r.reason]);
  const widths = [4, 0, 0].map((min, i) => Math.max(min, ...rows.map((row) => row[i]!.length)));
  const lines = [`dcpx conform --${report.mode} ${report.target}`];
  for (const [i, r] of report.results.entries()) {
    const row = rows[i]!;
    lines.push(
      `${row[0]!.padEnd(widths[0]!)}  ${row[1]!.padEnd(widths[1]!)}  ${row[2]!.padEnd(widths[2]!)}  ${row[3]}`,
    );
    if (r.outcome === 'fail') {
      for (const f of r.frames.slice(0, 6)) lines.push(`${' '.repeat(widths[0]! + 2)}  #${f.seq} ${f.what}`);
      if (r.frames.length > 6)
        lines.push(`${' '.repeat(widths[0]! + 2)}  … ${r.frames.length - 6} more frames`);
    }
  }
  const count = (o: string) => report.results.filter((r) => r.outcome === o).length;
  lines.push(`${count('pass')} passed, ${count('fail')} failed, ${count('skip')} skipped`);
  return `${lines.join('\n')}\n`;
}

export function formatJson(report: KitReport): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}
