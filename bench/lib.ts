// Small benchmark kit: warm up, several timed rounds, median and spread; comparisons run side by side.

export interface Measurement {
  name: string;
  /** Median of the rounds, in units per second. */
  median: number;
  min: number;
  max: number;
  unit: string;
  /** The rate of each timed round, in round order (rounds of `compare` line up across contenders). */
  rates: number[];
}

export interface RoundResult {
  units: number;
  seconds: number;
}

/** Runs `fn` for `warmup` rounds then `rounds` timed rounds; each round returns how many units it did. */
export async function measure(
  name: string,
  unit: string,
  fn: () => Promise<number> | number,
  options: { warmup?: number; rounds?: number } = {},
): Promise<Measurement> {
  const warmup = options.warmup ?? 2;
  const rounds = options.rounds ?? 7;
  for (let i = 0; i < warmup; i++) await fn();
  const rates: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const start = process.hrtime.bigint();
    const units = await fn();
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    rates.push(units / seconds);
  }
  const sorted = [...rates].sort((a, b) => a - b);
  return {
    name,
    unit,
    median: sorted[Math.floor(sorted.length / 2)]!,
    min: sorted[0]!,
    max: sorted[sorted.length - 1]!,
    rates,
  };
}

/**
 * Interleaves rounds of several contenders so machine noise hits them alike; returns one Measurement each.
 * A contender returns the units it did (timed here), or units and seconds when it times itself (a tool
 * that reports its own timed section, e.g. memcslap, whose start-up must not count).
 */
export async function compare(
  contenders: {
    name: string;
    unit: string;
    fn: () => Promise<number | RoundResult> | number | RoundResult;
  }[],
  options: { warmup?: number; rounds?: number } = {},
): Promise<Measurement[]> {
  const warmup = options.warmup ?? 2;
  const rounds = options.rounds ?? 7;
  for (let i = 0; i < warmup; i++) for (const c of contenders) await c.fn();
  const rates = contenders.map(() => [] as number[]);
  for (let i = 0; i < rounds; i++) {
    for (const [k, c] of contenders.entries()) {
      const start = process.hrtime.bigint();
      const result = await c.fn();
      const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
      rates[k]!.push(typeof result === 'number' ? result / elapsed : result.units / result.seconds);
    }
  }
  return contenders.map((c, k) => {
    const sorted = [...rates[k]!].sort((a, b) => a - b);
    return {
      name: c.name,
      unit: c.unit,
      median: sorted[Math.floor(sorted.length / 2)]!,
      min: sorted[0]!,
      max: sorted[sorted.length - 1]!,
      rates: rates[k]!,
    };
  });
}

export function formatRate(value: number): string {
  if (value >= 1e9) return `${(value / 1e9).toFixed(2)} G`;
  if (value >= 1e6) return `${(value / 1e6).toFixed(2)} M`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(1)} k`;
  return value.toFixed(1);
}

export interface BenchRow {
  scenario: string;
  metric: string;
  value: number;
  unit: string;
  spread?: string;
  target?: string;
  met?: boolean;
}

export function printRows(rows: BenchRow[], json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  const table = rows.map((r) => ({
    scenario: r.scenario,
    metric: r.metric,
    value:
      r.unit === 'ratio'
        ? r.value.toFixed(3)
        : r.unit === ''
          ? formatRate(r.value)
          : `${r.value.toFixed(1)} ${r.unit}`,
    spread: r.spread ?? '',
    target: r.target ? `${r.target} ${r.met ? 'met' : 'MISSED'}` : '',
  }));
  console.table(table);
}

/**
 * The per-round ratios a/b of two contenders measured in the same `compare` (each round's two runs saw
 * the same machine), as a Measurement: median and spread of the ratios.
 */
export function roundRatios(name: string, a: Measurement, b: Measurement): Measurement {
  const rates = a.rates.map((x, i) => x / b.rates[i]!);
  const sorted = [...rates].sort((x, y) => x - y);
  return {
    name,
    unit: 'ratio',
    median: sorted[Math.floor(sorted.length / 2)]!,
    min: sorted[0]!,
    max: sorted[sorted.length - 1]!,
    rates,
  };
}

/** min–max of the rounds, in MB/s for byte rates and plain units otherwise. */
export function spread(m: Measurement): string {
  const scale = m.unit === 'B/s' ? 1e6 : 1;
  return `${(m.min / scale).toFixed(1)}–${(m.max / scale).toFixed(1)}`;
}
