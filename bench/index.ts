import { benchDecode } from './decode.js';
import { benchKv } from './kv.js';
import { type BenchRow, printRows } from './lib.js';
import { benchScale } from './scale.js';
import { benchProxy, benchStream } from './stream.js';
import { benchTakeover } from './takeover.js';

// `npm run bench [-- scenario...] [--json]`: runs the named scenarios (all when none is named).

const SCENARIOS: Record<string, () => Promise<BenchRow[]>> = {
  decode: benchDecode,
  stream: benchStream,
  proxy: benchProxy,
  kv: benchKv,
  takeover: benchTakeover,
  scale: benchScale,
};

async function run(): Promise<void> {
  const args = process.argv.slice(2);
  const json = args.includes('--json');
  const names = args.filter((a) => !a.startsWith('--'));
  const chosen = names.length > 0 ? names : Object.keys(SCENARIOS);
  const unknown = chosen.filter((n) => !(n in SCENARIOS));
  if (unknown.length > 0)
    throw new Error(`unknown scenario ${unknown.join(', ')}; known: ${Object.keys(SCENARIOS).join(', ')}`);
  const rows: BenchRow[] = [];
  for (const name of chosen) rows.push(...(await SCENARIOS[name]!()));
  printRows(rows, json);
}

run().catch((error) => {
  console.error(error);
  process.exit(1);
});
