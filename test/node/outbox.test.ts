import { describe, expect, it } from 'vitest';
import { Outbox } from '../../src/node/outbox.js';
import { silentLogger } from '../../src/protocol/index.js';
import type { Store } from '../../src/store/index.js';

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Lets every queued promise callback run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
}

function harness() {
  const sent: string[] = [];
  const store = { commit: () => Promise.resolve() } as unknown as Store;
  const wire = {
    send: (chunks: Buffer[]) => {
      for (const c of chunks) sent.push(c.toString());
      return true;
    },
    bufferedBytes: 0,
  };
  const outbox = new Outbox({
    store,
    wire,
    log: silentLogger,
    highWater: 1 << 20,
    hardLimit: 1 << 24,
    onSent: () => {},
    onWritable: () => {},
    onStateNotWritten: () => {},
    onOverflow: () => {},
  });
  return { outbox, sent };
}

describe('Outbox', () => {
  it('holds a reply queued while an earlier state write is awaited until its own state write is durable', async () => {
    const { outbox, sent } = harness();
    const first = deferred();
    const second = deferred();
    outbox.afterMetadata(first.promise);
    outbox.push([Buffer.from('first')]);
    await settle(); // the flush now waits for the first state write
    outbox.afterMetadata(second.promise);
    outbox.push([Buffer.from('second')]);
    first.resolve();
    await settle();
    expect(sent).toEqual(['first']);
    second.resolve();
    await settle();
    expect(sent).toEqual(['first', 'second']);
  });

  it('flush() called while a flush waits for a state write sends nothing before that write is durable', async () => {
    const { outbox, sent } = harness();
    const write = deferred();
    outbox.afterMetadata(write.promise);
    outbox.push([Buffer.from('state set')]);
    await settle();
    outbox.push([Buffer.from('quit')]);
    let flushed = false;
    void outbox.flush().then(() => {
      flushed = true;
    });
    await settle();
    expect(sent).toEqual([]);
    expect(flushed).toBe(false);
    write.resolve();
    await settle();
    expect(sent).toEqual(['state set', 'quit']);
    expect(flushed).toBe(true);
  });
});
