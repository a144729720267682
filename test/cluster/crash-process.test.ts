import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TOPOLOGY_STEPS } from '../../src/cluster/index.js';
import { EmbeddedMetadataStore } from '../../src/cluster/metadata/embedded.js';
import type { StorageNode } from '../../src/node/node.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { addressOf, convergenceProblems, range, startManager, startNodes } from './fixture.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const CHILD = join(import.meta.dirname, 'manager-child.mjs');
const VBS = 8;

async function runChild(args: string[]): Promise<{ code: number | string; stdout: string }> {
  const proc = spawn(process.execPath, [CHILD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  proc.stdout.on('data', (d) => {
    stdout += d;
  });
  const code = await new Promise<number | string>((resolve) =>
    proc.on('exit', (c, signal) => resolve(c ?? signal ?? -1)),
  );
  return { code, stdout };
}

/** Opens the directory in this process as a restarted manager and lets its janitor run 2 intervals. */
async function restart(dir: string) {
  const clock = new ManualClock();
  const store = await EmbeddedMetadataStore.open({ dir, name: 'restarted', clock });
  const m = await startManager('restarted', store, { clock });
  await m.leading;
  await m.handle.settled();
  await m.interval();
  await m.interval();
  return {
    m,
    async close() {
      await m.handle.close();
      await store.close();
    },
  };
}

describe('a manager process exiting 137 at every step of add-node and remove-node (embedded store)', () => {
  const steps = TOPOLOGY_STEPS.filter((s) => /^(add-node|remove-node):/.test(s));
  for (const step of steps) {
    it(`restarts into a converged cluster after exit 137 at ${step}`, async () => {
      const nodes = await startNodes(VBS, [{ active: range(VBS) }, { replica: range(VBS) }]);
      cleanups.push(() => Promise.all(nodes.map((n) => n.stop())));
      const [a, b] = nodes as [StorageNode, StorageNode];
      const dir = mkdtempSync(join(tmpdir(), 'dcpx-manager-proc-'));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      const removing = step.startsWith('remove-node:');
      if (removing) {
        const setup = await restart(dir);
        await setup.m.handle.core.submit({ opId: 'a', kind: 'add-node', node: addressOf(a) });
        await setup.m.handle.core.submit({ opId: 'b', kind: 'add-node', node: addressOf(b) });
        await setup.m.handle.settled();
        await setup.close();
      }
      const target = removing ? b : a;
      const child = await runChild([
        dir,
        step,
        removing ? 'remove-node' : 'add-node',
        addressOf(target),
        'op',
      ]);
      expect(child.code).toBe(137);
      expect(child.stdout).toBe('');

      const after = await restart(dir);
      cleanups.push(() => after.close());
      const status = await after.m.handle.core.status();
      expect(convergenceProblems(status, nodes)).toEqual([]);
      const members = status.nodes.map((n) => n.address);
      if (removing) expect(members).toEqual([addressOf(a)]);
      else expect(members.includes(addressOf(a))).toBe(step === 'add-node:after-clear');
    });
  }
});
