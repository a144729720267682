import { fileURLToPath } from 'node:url';
import { benchCluster } from './cluster.js';
import { benchDecode } from './decode.js';
import { benchDurability } from './durability.js';
import { benchKv } from './kv.js';
import { type BenchRow, printRows } from './lib.js';
import { benchMemory } from './memory.js';
import { benchRebalance } from './rebalance.js';
import { benchScale } from './scale.js';
import { benchSdk } from './sdk.js';
import { benchSoak } from './soak.js';
import { benchProxy, benchStream } from './stream.js';
import { benchTakeover } from './takeover.js';

// `npm run bench [-- scenario...] [--json]` and `dcpx bench [scenario...] [--json]`: runs the named
// scenarios (all when none is named) and prints one table (or JSON).

export const SCENARIOS: Record<string, () => Promise<BenchRow[]>> = {
  decode: benchDecode,
  stream: benchStream,
  proxy: benchProxy,
  kv: benchKv,
  takeover: benchTakeover,
  scale: benchScale,
  memory: benchMemory,
  soak: benchSoak,
  cluster: benchCluster,
  sdk: benchSdk,
  rebalance: benchRebalance,
  durability: benchDurability,
};

export async function runBench(names: readonly string[], json: boolean): Promise<BenchRow[]> {
  const chosen = names.length > 0 ? names : Object.keys(SCENARIOS);
  const unknown = chosen.filter((n) => !(n in SCENARIOS));
  if (unknown.length > 0) {
    throw new Error(`unknown scenario ${unknown.join(', ')}; known: ${Object.keys(SCENARIOS).join(', ')}`);
  }
  const rows: BenchRow[] = [];
  for (const name of chosen) {
    if (!json) process.stderr.write(`bench: ${name}…\n`);
    rows.push(...(await SCENARIOS[name]!()));
  }
  printRows(rows, json);
  return rows;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  runBench(
    args.filter((a) => !a.startsWith('--')),
    args.includes('--json'),
  ).catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
