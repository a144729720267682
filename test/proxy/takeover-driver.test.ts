import { afterEach, describe, expect, it } from 'vitest';
import * as p from '../../src/protocol/index.js';
import {
  connectTcp,
  type FrameConnection,
  type FrameServer,
  listenTcp,
} from '../../src/protocol/transport/index.js';
import { ProxyMetrics } from '../../src/proxy/metrics.js';
import { TakeoverAttempt } from '../../src/proxy/takeover.js';
import {
  TakeoverDriver,
  TakeoverError,
  type TakeoverHost,
  TakeoverUnsettledError,
} from '../../src/proxy/takeover-driver.js';

// DESIGN.md's retry protocol, read in one place and tested there: the driver against a scripted host
// (each attempt does what the script says) and two fake copies of the vBucket answering GET_VBUCKET and
// SET_VBUCKET, on an injected clock with no jitter.

const VB = 7;
const { Active, Replica, Dead } = p.VBucketState;
/** 'down-*': the connection is lost and both nodes stay unreachable for `downFor` control calls. */
type Step = 'retry' | 'done' | 'refused' | 'lost' | 'cut-pending' | 'down-pending' | 'down-active';
/** Every SET_VBUCKET the fake copies took, in order ('<side> <state>'). */
const sets: string[] = [];

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/**
 * One fake copy of the vBucket: its state, read and set over the wire. `held` SET_VBUCKET replies are
 * held back (the state is taken at once): a node too slow to answer within the request timeout.
 */
async function copy(initial: p.VBucketState, side: string) {
  const state = { value: initial };
  const replies = { held: 0, release: [] as (() => void)[], onHeld: () => {} };
  const server: FrameServer = await listenTcp({ port: 0 }, (conn) => {
    conn.on('frame', (f) => {
      if (f.opcode === p.Opcode.GET_VBUCKET)
        conn.send(p.encodeGetVBucketResponse({ opaque: f.opaque, status: 0, state: state.value }));
      if (f.opcode === p.Opcode.SET_VBUCKET) {
        state.value = p.decodeSetVBucket(f).state;
        sets.push(`${side} ${p.vbucketStateName(state.value)}`);
        const reply = () =>
          conn.send(p.encodeStatusResponse({ opcode: f.opcode, opaque: f.opaque, status: 0 }));
        if (replies.held > 0) {
          replies.held--;
          replies.release.push(reply);
          replies.onHeld();
        } else reply();
      }
    });
  });
  cleanups.push(() => server.close());
  let conn: Promise<FrameConnection> | undefined;
  return {
    state,
    replies,
    control: () => {
      conn ??= connectTcp({ host: '127.0.0.1', port: server.address().port });
      cleanups.push(async () => (await conn!).destroy());
      return conn;
    },
  };
}

async function scripted(
  steps: Step[],
  options: {
    onClose?: () => void;
    downFor?: number;
    /** The copies' states before the run (default: source active, target replica). */
    initial?: [p.VBucketState, p.VBucketState];
    requestTimeoutMs?: number;
  } = {},
) {
  sets.length = 0;
  const producer = await copy(options.initial?.[0] ?? Active, 'producer');
  const consumer = await copy(options.initial?.[1] ?? Replica, 'consumer');
  const log: string[] = [];
  const clock = { t: 0, now: () => clock.t };
  const closer = new AbortController();
  let n = 0;
  let unreachable = 0;
  const host: TakeoverHost = {
    log: p.silentLogger,
    metrics: new ProxyMetrics(),
    clock,
    randomizeBackoff: false,
    requestTimeoutMs: options.requestTimeoutMs ?? 1_000,
    signal: closer.signal,
    connect: async () => {},
    dropReplicaStream: async () => undefined,
    beginAttempt: (vb) => {
      const step = steps[n++] ?? 'refused';
      log.push(`attempt ${n}: ${step}`);
      const attempt = new TakeoverAttempt(vb, n, n, 'connection');
      const added = Promise.resolve(step === 'refused' ? p.Status.Einval : p.Status.Success);
      setImmediate(() => {
        if (step === 'refused') return;
        attempt.streamRequested(100 + n);
        // the producer's takeover: pending acked → the old copy dead (dcp-spec §9)
        attempt.requestedState = p.VBucketState.Pending;
        if (attempt.stateReplied(p.Status.Success)) return;
        producer.state.value = Dead;
        if (step === 'cut-pending') {
          // cut between the two acks: the consumer may be writing the active state right now
          consumer.state.value = p.VBucketState.Pending;
          attempt.emit({ kind: 'error', error: new p.ConnectionClosedError('c', 'cut') });
          return;
        }
        attempt.requestedState = Active;
        if (step === 'retry') attempt.stateReplied(p.Status.Etmpfail);
        if (step === 'done' || step === 'lost') consumer.state.value = Active;
        if (step === 'done') attempt.stateReplied(p.Status.Success);
        if (step === 'lost') attempt.emit({ kind: 'error', error: new p.ConnectionClosedError('c', 'cut') });
        if (step === 'down-pending' || step === 'down-active') {
          // the target was killed after its pending ack: it comes back with its last durable state
          consumer.state.value = step === 'down-active' ? Active : p.VBucketState.Pending;
          unreachable = options.downFor ?? 0;
          attempt.emit({ kind: 'error', error: new p.ConnectionClosedError('c', 'node killed') });
        }
      });
      return { attempt, added };
    },
    endAttempt: () => {},
    runsOnCurrentConnections: () => true,
    closeBoth: async (vb) => {
      log.push('close');
      options.onClose?.();
      return { vbucket: vb, ok: true };
    },
    control: (side) => {
      if (unreachable > 0) {
        unreachable--;
        return Promise.reject(new p.ConnectionClosedError(`${side}:1`, 'connect failed: ECONNREFUSED'));
      }
      return side === 'producer' ? producer.control() : consumer.control();
    },
    nodes: { producer: 'source:1', consumer: 'target:2' },
  };
  return { driver: new TakeoverDriver(host), producer, consumer, log, clock, closer };
}

describe('the takeover driver', () => {
  it('cleans each asked-for retry up (close, source active again) before the next attempt', async () => {
    const { driver, producer, consumer, log } = await scripted(['retry', 'retry', 'done']);
    const result = await driver.run(VB, { attempts: 5, minBackoffMs: 1 });
    expect(result.attempts).toBe(3);
    expect(log).toEqual(['attempt 1: retry', 'close', 'attempt 2: retry', 'close', 'attempt 3: done']);
    expect([producer.state.value, consumer.state.value]).toEqual([Dead, Active]);
  });

  it('aborts on a refusal no retry can fix, after its cleanup: one attempt, the source active', async () => {
    const { driver, producer, log } = await scripted(['refused', 'done']);
    const error = await driver.run(VB, { attempts: 5, minBackoffMs: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TakeoverError);
    expect((error as TakeoverError).attempts).toBe(1);
    expect((error as TakeoverError).message).toMatch(/Einval/);
    expect(log).toEqual(['attempt 1: refused', 'close']);
    expect(producer.state.value).toBe(Active);
  });

  it('aborts when the cleanup finds both copies active, whatever attempts are left (invariant 1)', async () => {
    let consumerCopy: { value: p.VBucketState } | undefined;
    const s = await scripted(['retry', 'done'], {
      onClose: () => {
        consumerCopy!.value = Active;
        s.producer.state.value = Active;
      },
    });
    consumerCopy = s.consumer.state;
    const error = await s.driver.run(VB, { attempts: 5, minBackoffMs: 1 }).catch((e: unknown) => e);
    expect((error as TakeoverError).attempts).toBe(1);
    expect((error as TakeoverError).message).toMatch(/both copies are active/);
    expect(s.log).toEqual(['attempt 1: retry', 'close']);
  });

  it('takes a consumer left pending back to replica before it makes the source active again (invariant 1)', async () => {
    const { driver, producer, consumer, log } = await scripted(['cut-pending', 'done']);
    const result = await driver.run(VB, { attempts: 5, minBackoffMs: 1 });
    expect(result.attempts).toBe(2);
    expect(log).toEqual(['attempt 1: cut-pending', 'close', 'attempt 2: done']);
    // the other order leaves a window where a consumer finishing its active write and the revived
    // source are both active
    expect(sets).toEqual(['consumer replica', 'producer active']);
    expect([producer.state.value, consumer.state.value]).toEqual([Dead, Active]);
  });

  it('counts a connection lost after the consumer went active as done', async () => {
    const { driver, log } = await scripted(['lost']);
    const result = await driver.run(VB, { attempts: 5, minBackoffMs: 1 });
    expect(result.attempts).toBe(1);
    expect(log).toEqual(['attempt 1: lost', 'close']);
  });

  it('stops when the injected clock passes the deadline, between attempts', async () => {
    let clockRef: { t: number } | undefined;
    const s = await scripted(['retry', 'retry', 'retry', 'retry'], {
      onClose: () => {
        clockRef!.t += 600;
      },
    });
    clockRef = s.clock;
    const error = await s.driver
      .run(VB, { attempts: 10, deadlineMs: 1_000, minBackoffMs: 1 })
      .catch((e) => e);
    expect((error as TakeoverError).attempts).toBe(2);
    expect((error as TakeoverError).message).toMatch(/deadline of 1000 ms passed/);
    expect(s.producer.state.value).toBe(Active);
  });

  it('reports its duration in whole milliseconds', async () => {
    const s = await scripted(['done']);
    s.clock.t = 0.3;
    const run = s.driver.run(VB, { attempts: 1 });
    s.clock.t = 134.395267;
    expect((await run).ms).toBe(134);
  });

  it('waits for a restarting node to settle the copies: the source active again after a cut at the pending ack', async () => {
    const s = await scripted(['down-pending'], { downFor: 4 });
    const error = await s.driver.run(VB, { attempts: 1, minBackoffMs: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TakeoverError);
    expect([s.producer.state.value, s.consumer.state.value]).toEqual([Active, p.VBucketState.Replica]);
  });

  it('waits for a restarting node to settle the copies: a success when the target came back active', async () => {
    const s = await scripted(['down-active'], { downFor: 4 });
    const result = await s.driver.run(VB, { attempts: 1, minBackoffMs: 1 });
    expect(result.attempts).toBe(1);
    expect([s.producer.state.value, s.consumer.state.value]).toEqual([Dead, Active]);
  });

  it('spends no attempt on a node that was down: the next attempt still runs', async () => {
    const s = await scripted(['down-pending', 'done'], { downFor: 4 });
    const result = await s.driver.run(VB, { attempts: 1, minBackoffMs: 1 });
    expect(result.attempts).toBe(2);
    expect(s.log).toEqual(['attempt 1: down-pending', 'close', 'attempt 2: done']);
  });

  it('says the outcome is unknown, naming the node, when a node stays down past the deadline', async () => {
    const s = await scripted(['down-pending'], { downFor: 1_000_000 });
    const error = await s.driver
      .run(VB, { attempts: 5, deadlineMs: 100, settleGraceMs: 100, minBackoffMs: 1 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TakeoverUnsettledError);
    expect((error as Error).message).toMatch(
      /outcome unknown after 1 attempt\(s\): could not reach the source source:1/,
    );
  });

  it('finishes reviving the source when the target took replica but its answer timed out (a repair after a cut at the pending ack)', async () => {
    // what a takeover cut between the two acks leaves: the source dead, the target pending
    const s = await scripted(['done'], { initial: [Dead, p.VBucketState.Pending], requestTimeoutMs: 50 });
    // the target takes replica but answers too late: the driver reads the copies again and must not
    // mistake its own half-done repair (source dead, target replica) for a vBucket moved elsewhere
    s.consumer.replies.held = 1;
    const result = await s.driver.run(VB, { attempts: 1, minBackoffMs: 1 });
    expect(sets.slice(0, 2)).toEqual(['consumer replica', 'producer active']);
    expect(result.attempts).toBe(1);
    expect([s.producer.state.value, s.consumer.state.value]).toEqual([Dead, Active]);
  });

  it('does not stop between taking the target back to replica and reviving the source when the move is stopped', async () => {
    const s = await scripted(['cut-pending']);
    const stop = new AbortController();
    // the target takes replica; its answer comes only after the move was stopped and the settle grace
    // (a 0 ms timer, so it runs before the 20 ms one below) has passed
    s.consumer.replies.held = 1;
    s.consumer.replies.onHeld = () => {
      stop.abort(new Error('stopped'));
      setTimeout(() => s.consumer.replies.release.shift()!(), 20);
    };
    const error = await s.driver
      .run(VB, { attempts: 1, signal: stop.signal, settleGraceMs: 0, minBackoffMs: 1 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TakeoverError);
    // never the source dead and the target replica: no later run may revive a source it did not kill
    expect([s.producer.state.value, s.consumer.state.value]).toEqual([Active, Replica]);
  });

  it('ends at once when its owner closes, with the closing reason as the cause', async () => {
    const s = await scripted(['retry', 'retry', 'retry']);
    const reason = new Error('owner closed');
    const run = s.driver.run(VB, { attempts: 3, minBackoffMs: 60_000 }).catch((e: unknown) => e);
    for (let i = 0; i < 1_000 && !s.log.includes('close'); i++) await new Promise((r) => setTimeout(r, 2));
    s.closer.abort(reason);
    const error = await run;
    expect(error).toBeInstanceOf(TakeoverError);
    expect((error as TakeoverError).cause).toBe(reason);
  });
});
