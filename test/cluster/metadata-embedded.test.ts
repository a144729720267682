import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { type EmbeddedLease, EmbeddedMetadataStore } from '../../src/cluster/metadata/embedded.js';
import { MetadataLockedError } from '../../src/cluster/metadata/errors.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { ROOT } from '../helpers/processes.js';
import { eventually, metadataContract } from './metadata-contract.js';

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

const b = (s: string) => Buffer.from(s);
const text = (v: Uint8Array | undefined) => (v === undefined ? undefined : Buffer.from(v).toString());

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-meta-'));
  dirs.push(dir);
  return dir;
}

/** Copies the store's files as a crash would leave them (the LOCK file of a live owner stays behind). */
function crashCopy(from: string): string {
  const to = tempDir();
  for (const name of fs.readdirSync(from)) {
    if (name !== 'LOCK') fs.copyFileSync(path.join(from, name), path.join(to, name));
  }
  return to;
}

function walFiles(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((n) => n.startsWith('wal-'))
    .sort();
}

describe('embedded metadata store: durability and ownership', () => {
  it('a reopened store has every key and continues the revision; leases of the old process are expired on open', async () => {
    const dir = tempDir();
    const clock = new ManualClock();
    const s1 = await EmbeddedMetadataStore.open({ dir, clock });
    await s1.txn([], [{ type: 'put', key: 'a', value: b('1') }]);
    await s1.txn([], [{ type: 'put', key: 'b', value: b('2') }]);
    const lease = await s1.grantLease(1_000);
    const leadership = await s1.campaign('leader', b('me'), lease);
    const before = s1.revision;
    // a crash: the files as they are now, without close() (which would revoke the lease)
    const crashed = crashCopy(dir);
    await s1.close();

    const s2 = await EmbeddedMetadataStore.open({ dir: crashed, clock });
    expect(text((await s2.get('a'))?.value)).toBe('1');
    expect(await s2.get('b')).toMatchObject({ version: 1 });
    // the leader key died with its lease, as one new revision
    expect(await s2.get(leadership.key)).toBeUndefined();
    expect(s2.revision).toBe(before + 1);
    const again = await s2.campaign('leader', b('me'), await s2.grantLease(1_000));
    expect(again.epoch).toBeGreaterThan(leadership.epoch);
    const put = await s2.txn([], [{ type: 'put', key: 'c', value: b('3') }]);
    expect(put.revision).toBeGreaterThan(again.epoch);
    await s2.close();
  });

  it('snapshots replace the WAL as it grows, and a watch from a revision before the restart still replays', async () => {
    const dir = tempDir();
    const s1 = await EmbeddedMetadataStore.open({ dir, snapshotEveryRecords: 5 });
    const first = await s1.txn([], [{ type: 'put', key: 'k/0', value: b('0') }]);
    for (let i = 1; i < 40; i++) await s1.txn([], [{ type: 'put', key: `k/${i % 7}`, value: b(String(i)) }]);
    const last = s1.revision;
    await s1.close();
    expect(walFiles(dir).length).toBeLessThanOrEqual(2);

    const s2 = await EmbeddedMetadataStore.open({ dir, snapshotEveryRecords: 5 });
    expect(s2.revision).toBe(last);
    expect((await s2.range('k/')).kvs.map((kv) => text(kv.value))).toEqual([
      '35',
      '36',
      '37',
      '38',
      '39',
      '33',
      '34',
    ]);
    const seen: number[] = [];
    await s2.watch('k/', first.revision, (e) => seen.push(e.kv.modRevision));
    expect(seen).toHaveLength(40);
    expect(seen[0]).toBe(first.revision);
    await s2.close();
  });

  it('a watch from a revision whose history is no longer held is refused as compacted', async () => {
    const s = await EmbeddedMetadataStore.open({ dir: tempDir(), historyLimit: 8 });
    const first = await s.txn([], [{ type: 'put', key: 'h', value: b('0') }]);
    for (let i = 1; i < 20; i++) await s.txn([], [{ type: 'put', key: 'h', value: b(String(i)) }]);
    await expect(s.watch('h', first.revision, () => {})).rejects.toMatchObject({
      code: 'DCPX_ERR_META_COMPACTED',
    });
    const seen: string[] = [];
    await s.watch('h', s.revision, (e) => seen.push(text(e.kv.value)!));
    expect(seen).toEqual(['19']);
    await s.close();
  });

  it('recovery drops a torn last WAL record and keeps every whole one', async () => {
    const dir = tempDir();
    const s1 = await EmbeddedMetadataStore.open({ dir });
    for (let i = 0; i < 10; i++) await s1.txn([], [{ type: 'put', key: `t/${i}`, value: b(`v${i}`) }]);
    const last = s1.revision;

    // a partial record appended after the last whole one (a crash in mid-write)
    const withGarbage = crashCopy(dir);
    const wal = path.join(withGarbage, walFiles(withGarbage).at(-1)!);
    fs.appendFileSync(wal, Buffer.from([40, 0, 0, 0, 1, 2, 3, 4, 5, 6]));
    const s2 = await EmbeddedMetadataStore.open({ dir: withGarbage });
    expect(s2.revision).toBe(last);
    expect((await s2.range('t/')).kvs).toHaveLength(10);
    await s2.txn([], [{ type: 'put', key: 't/new', value: b('n') }]);
    await s2.close();
    const s2b = await EmbeddedMetadataStore.open({ dir: withGarbage });
    expect(s2b.revision).toBe(last + 1);
    await s2b.close();

    // the last record itself cut short: that txn (never acknowledged) is gone, the others stay
    const cut = crashCopy(dir);
    const cutWal = path.join(cut, walFiles(cut).at(-1)!);
    fs.truncateSync(cutWal, fs.statSync(cutWal).size - 3);
    const s3 = await EmbeddedMetadataStore.open({ dir: cut });
    expect(s3.revision).toBe(last - 1);
    expect(await s3.get('t/9')).toBeUndefined();
    expect(text((await s3.get('t/8'))?.value)).toBe('v8');
    await s3.close();

    // a flipped byte inside the last record fails its checksum the same way
    const flipped = crashCopy(dir);
    const flippedWal = path.join(flipped, walFiles(flipped).at(-1)!);
    const bytes = fs.readFileSync(flippedWal);
    bytes[bytes.length - 2]! ^= 0xff;
    fs.writeFileSync(flippedWal, bytes);
    const s4 = await EmbeddedMetadataStore.open({ dir: flipped });
    expect(s4.revision).toBe(last - 1);
    await s4.close();
    await s1.close();
  });

  it('concurrent txns commit at consecutive revisions, each acknowledged once durable', async () => {
    const dir = tempDir();
    const s = await EmbeddedMetadataStore.open({ dir });
    const base = s.revision;
    const results = await Promise.all(
      Array.from({ length: 64 }, (_, i) => s.txn([], [{ type: 'put', key: `c/${i}`, value: b(String(i)) }])),
    );
    expect(results.map((r) => r.revision).sort((x, y) => x - y)).toEqual(
      Array.from({ length: 64 }, (_, i) => base + i + 1),
    );
    const copy = crashCopy(dir);
    const reopened = await EmbeddedMetadataStore.open({ dir: copy });
    expect((await reopened.range('c/')).kvs).toHaveLength(64);
    await reopened.close();
    await s.close();
  });

  it('a txn resolves, and reads and watches see it, only once its WAL write is synced; waiting txns share the next sync', async () => {
    let syncs = 0;
    let held: (() => void)[] | undefined;
    const walSync = async (wal: FileHandle) => {
      if (held) await new Promise<void>((resolve) => held!.push(resolve));
      await wal.datasync();
      syncs++;
    };
    const s = await EmbeddedMetadataStore.open({ dir: tempDir(), walSync });
    const before = await s.txn([], [{ type: 'put', key: 'x', value: b('old') }]);
    const seen: string[] = [];
    await s.watch('x', 0, (e) => seen.push(text(e.kv.value)!));
    held = [];
    let acked = 0;
    const first = s.txn([], [{ type: 'put', key: 'x', value: b('new') }]).then((r) => {
      acked++;
      return r;
    });
    const read = s.get('x');
    await new Promise((r) => setTimeout(r, 20));
    const rest = Array.from({ length: 10 }, (_, i) =>
      s.txn([], [{ type: 'put', key: `y${i}`, value: b('y') }]).then(() => acked++),
    );
    await new Promise((r) => setTimeout(r, 50));
    expect(acked).toBe(0);
    expect(seen).toEqual([]);
    const syncsBefore = syncs;
    const release = () => {
      const waiting = held!;
      held = undefined;
      for (const resolve of waiting) resolve();
    };
    release();
    expect((await first).revision).toBe(before.revision + 1);
    expect(text((await read)?.value)).toBe('new');
    await Promise.all(rest);
    expect(acked).toBe(11);
    expect(seen).toEqual(['new']);
    // the first sync carried the first txn; the ten that waited behind it went out in one more
    expect(syncs - syncsBefore).toBe(2);
    await s.close();
  });

  it('a failed WAL sync rejects the txn and every later write with a typed error', async () => {
    let failing = false;
    const walSync = async (wal: FileHandle) => {
      if (failing) throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
      await wal.datasync();
    };
    const s = await EmbeddedMetadataStore.open({ dir: tempDir(), walSync });
    await s.txn([], [{ type: 'put', key: 'a', value: b('1') }]);
    failing = true;
    await expect(s.txn([], [{ type: 'put', key: 'a', value: b('2') }])).rejects.toMatchObject({
      code: 'DCPX_ERR_META_WRITE',
    });
    failing = false;
    await expect(s.txn([], [{ type: 'put', key: 'b', value: b('3') }])).rejects.toMatchObject({
      code: 'DCPX_ERR_META_WRITE',
    });
    await s.close();
  });

  it('a second opener of the directory is refused with an error naming the owner, until the owner closes', async () => {
    const dir = tempDir();
    const owner = await EmbeddedMetadataStore.open({ dir, name: 'manager-a' });
    const refused = EmbeddedMetadataStore.open({ dir, name: 'manager-b' });
    await expect(refused).rejects.toBeInstanceOf(MetadataLockedError);
    await expect(refused).rejects.toThrow(
      new RegExp(`in use by manager manager-a \\(pid ${process.pid} on ${os.hostname()}`),
    );
    await owner.close();
    const next = await EmbeddedMetadataStore.open({ dir, name: 'manager-b' });
    await next.close();
  });

  it('every acknowledged txn survives kill -9 of the writing process, whose stale lock is taken over', async () => {
    const dir = tempDir();
    const module = path.join(ROOT, 'dist/src/cluster/metadata/embedded.js');
    expect(fs.existsSync(module), `${module} missing: run npm run build`).toBe(true);
    // 8 writers in a loop; each acknowledged put is printed as "key revision"
    const script = `
      import { EmbeddedMetadataStore } from ${JSON.stringify(pathToFileURL(module).href)};
      const store = await EmbeddedMetadataStore.open({ dir: ${JSON.stringify(dir)}, name: 'child', snapshotEveryRecords: 50 });
      process.stdout.write('open\\n');
      for (let w = 0; w < 8; w++) {
        void (async () => {
          for (let n = 0; ; n++) {
            const key = 'w' + w + '/' + n;
            const r = await store.txn([], [{ type: 'put', key, value: Buffer.from(key) }]);
            process.stdout.write(key + ' ' + r.revision + '\\n');
          }
        })();
      }`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    const exited = new Promise((resolve) => child.on('exit', resolve));
    await eventually(() => out.split('\n').length > 400 || child.exitCode !== null, 30_000);
    child.kill('SIGKILL');
    await exited;
    expect(err).toBe('');
    const acked = out
      .split('\n')
      .slice(0, -1) // the last line may be cut
      .filter((line) => line !== 'open')
      .map((line) => line.split(' ') as [string, string]);
    expect(acked.length).toBeGreaterThan(300);
    const store = await EmbeddedMetadataStore.open({ dir, name: 'after-crash' });
    for (const [key, revision] of acked) {
      const kv = await store.get(key);
      expect(kv?.modRevision, key).toBe(Number(revision));
    }
    expect(store.revision).toBeGreaterThanOrEqual(Math.max(...acked.map(([, r]) => Number(r))));
    await store.close();
  });
});
