import type { Command } from 'commander';

/** `dcpx bench`: the load benchmarks (built into dist/bench by `npm ci`). */
export function registerBench(program: Command): void {
  program
    .command('bench [scenarios...]')
    .description(
      'run load benchmarks: decode, stream, proxy, kv, takeover, scale, memory, soak, cluster, rebalance, durability (all by default)',
    )
    .option('--json', 'print JSON instead of a table')
    .action(async (scenarios: string[], flags: { json?: boolean }) => {
      const bench = (await import(new URL('../../bench/index.js', import.meta.url).href)) as {
        runBench(names: readonly string[], json: boolean): Promise<unknown>;
      };
      await bench.runBench(scenarios, flags.json ?? false);
      process.exit(0);
    });
}
