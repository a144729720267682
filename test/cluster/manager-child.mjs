// A manager process for the process-mode crash test (crash-process.test.ts): runs the built core on an
// embedded store, submits one operation and prints its result; `--crash-at` makes it exit with 137.
// Usage: node manager-child.mjs DIR CRASH_AT KIND NODE OP_ID
import { startManagerCore } from '../../dist/src/cluster/index.js';
import { EmbeddedMetadataStore } from '../../dist/src/cluster/metadata/embedded.js';
import { silentLogger } from '../../dist/src/protocol/index.js';

const [dir, crashAt, kind, node, opId] = process.argv.slice(2);
const store = await EmbeddedMetadataStore.open({ dir, name: 'child' });
let leading;
const led = new Promise((resolve) => {
  leading = resolve;
});
const handle = await startManagerCore({
  name: 'child',
  httpUrl: 'http://127.0.0.1:0',
  store,
  janitorIntervalMs: 60_000,
  leaseMs: 5_000,
  crashAt,
  processMode: true,
  log: silentLogger,
  onRole: (role) => role.leader && leading(role.epoch),
});
await led;
await handle.settled();
const result = await handle.core.submit({ opId, kind, node });
process.stdout.write(`${JSON.stringify(result)}\n`);
await handle.close();
await store.close();
