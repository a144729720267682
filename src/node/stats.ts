import { createHash } from 'node:crypto';
import { vbucketStateName } from '../protocol/index.js';
import type { Store } from '../store/index.js';

const started = Date.now();

/**
 * STAT groups: "" (general), "vbucket" (state per vBucket) and "vbucket-seqno" (high seqno, vbuuid,
 * purge seqno per vBucket, optionally of one vBucket: "vbucket-seqno 5"). undefined = unknown group.
 */
export function statGroup(group: string, store: Store, version: string): [string, string][] | undefined {
  const [name, arg] = group.trim().split(/\s+/, 2);
  switch (name ?? '') {
    case '': {
      let items = 0;
      for (const vb of store.vbuckets) if (vb.state === 1) items += vb.liveCount;
      return [
        ['pid', String(process.pid)],
        ['uptime', String(Math.floor((Date.now() - started) / 1000))],
        ['time', String(Math.floor(Date.now() / 1000))],
        ['version', version],
        ['curr_items', String(items)],
        ['vbuckets', String(store.size)],
      ];
    }
    case 'vbucket':
      return store.vbuckets.map((vb) => [`vb_${vb.id}`, vbucketStateName(vb.state)]);
    case 'vbucket-seqno': {
      const id = Number(arg);
      if (arg !== undefined && !(Number.isInteger(id) && id >= 0 && id < store.size)) return undefined;
      const chosen = arg === undefined ? store.vbuckets : [store.vbucket(id)];
      const rows: [string, string][] = [];
      for (const vb of chosen) {
        rows.push([`vb_${vb.id}:high_seqno`, String(vb.highSeqno)]);
        rows.push([`vb_${vb.id}:uuid`, String(vb.uuid)]);
        rows.push([`vb_${vb.id}:purge_seqno`, String(vb.purgeSeqno)]);
        // the replica failover promotes is the one with the highest prepared seqno (DESIGN.md Part 3)
        rows.push([`vb_${vb.id}:high_prepared_seqno`, String(vb.highPreparedSeqno)]);
        rows.push([`vb_${vb.id}:state`, vbucketStateName(vb.state)]);
      }
      return rows;
    }
    case 'vbucket-digest': {
      // per vBucket: a SHA-256 over key, value, CAS, revseqno, seqno and deletion of every latest
      // committed version, for comparing copies across nodes; "vbucket-digest VB UPTO" digests one vBucket as it
      // stood at seqno UPTO (to compare an old owner with a new one that has taken writes since)
      const [, vbArg, upToArg] = group.trim().split(/\s+/);
      const one = vbArg === undefined ? undefined : Number(vbArg);
      if (one !== undefined && !(Number.isInteger(one) && one >= 0 && one < store.size)) return undefined;
      // a seqno is decimal digits; anything else is a bad argument (EINVAL), never an exception
      if (upToArg !== undefined && !/^\d{1,20}$/.test(upToArg)) return undefined;
      const rows: [string, string][] = [];
      for (const vb of one === undefined ? store.vbuckets : [store.vbucket(one)]) {
        const upTo = upToArg === undefined ? vb.highSeqno : BigInt(upToArg);
        const hash = createHash('sha256');
        let n = 0;
        for (const item of vb.range(0n, upTo, true)) {
          // committed versions only: prepares and abort markers are held differently by copies built
          // from a disk snapshot (which leaves completed ones out), and are not the vBucket's data
          if (item.sync !== undefined && item.sync.kind !== 'commit') continue;
          hash.update(item.key).update('\0').update(item.value);
          hash.update(`\0${item.cas}:${item.revSeqno}:${item.bySeqno}:${item.deleted ? 1 : 0}\n`);
          if (!item.deleted) n++;
        }
        rows.push([`vb_${vb.id}:digest`, hash.digest('hex')]);
        rows.push([`vb_${vb.id}:items`, String(n)]);
      }
      return rows;
    }
    default:
      return undefined;
  }
}
