import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach } from 'vitest';
import { type EmbeddedLease, EmbeddedMetadataStore } from '../../src/cluster/metadata/embedded.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { metadataContract } from './metadata-contract.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

metadataContract('embedded', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-meta-'));
  dirs.push(dir);
  const clock = new ManualClock();
  let store: EmbeddedMetadataStore | undefined;
  return {
    ttlMs: 1_000,
    async stores(count) {
      store ??= await EmbeddedMetadataStore.open({ dir, name: 'contract', clock });
      return Array.from({ length: count }, () => store!);
    },
    async expire(lease) {
      (lease as EmbeddedLease).stopKeepAlive();
      clock.advance(lease.ttlMs * 2);
    },
    async cleanup() {
      await store?.close();
    },
  };
});
