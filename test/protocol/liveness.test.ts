import { describe, expect, it } from 'vitest';
import { Liveness, type LivenessError, type LivenessOptions } from '../../src/protocol/index.js';
import { ManualClock } from '../helpers/manual-clock.js';

function setup(options: Partial<LivenessOptions> = {}) {
  const clock = new ManualClock();
  const deaths: LivenessError[] = [];
  let probes = 0;
  const liveness = new Liveness({
    intervalMs: 100,
    probe: () => probes++,
    dead: (e) => deaths.push(e),
    clock,
    ...options,
  });
  liveness.start();
  return { clock, liveness, deaths, probes: () => probes };
}

describe('Liveness (DCP NOOP, dcp-spec §4.12)', () => {
  it('sends one NOOP per interval and declares the peer dead at the tick after one went unanswered', () => {
    const t = setup({ maxOutstanding: 1, peer: 'consumer' });
    t.clock.advance(99);
    expect(t.probes()).toBe(0);
    t.clock.advance(1);
    expect(t.probes()).toBe(1);
    expect(t.liveness.unanswered).toBe(1);
    t.clock.advance(99);
    expect(t.deaths).toHaveLength(0);
    t.clock.advance(1);
    expect(t.deaths).toHaveLength(1);
    expect(t.deaths[0]).toMatchObject({ code: 'DCPX_ERR_NOOP_UNANSWERED', unanswered: 1 });
    expect(t.deaths[0]!.message).toBe('consumer did not answer a NOOP within 100 ms');
    expect(t.clock.pending).toBe(0);
  });

  it('keeps a peer that answers every NOOP alive and reports the round trip', () => {
    const t = setup({ maxOutstanding: 1 });
    t.clock.advance(100);
    for (let i = 0; i < 50; i++) {
      t.clock.advance(7);
      t.liveness.answered();
      t.clock.advance(93);
    }
    expect(t.deaths).toHaveLength(0);
    expect(t.liveness.stats()).toMatchObject({
      noopsSent: 51,
      noopsAnswered: 50,
      unanswered: 1,
      lastRoundTripMs: 7,
    });
  });

  it('allows maxOutstanding unanswered NOOPs and one answer clears them all', () => {
    const t = setup({ maxOutstanding: 3 });
    t.clock.advance(300);
    expect(t.liveness.unanswered).toBe(3);
    expect(t.deaths).toHaveLength(0);
    t.liveness.answered();
    expect(t.liveness.unanswered).toBe(0);
    t.clock.advance(300);
    expect(t.deaths).toHaveLength(0);
    t.clock.advance(100);
    expect(t.deaths[0]!.message).toMatch(/did not answer 3 NOOPs within 100 ms/);
  });

  it('declares a silent peer dead after two intervals of silence, found within a quarter interval', () => {
    const t = setup({
      silentIntervals: 2,
      maxOutstanding: Number.POSITIVE_INFINITY,
      shouldProbe: () => false,
    });
    t.clock.advance(190);
    t.liveness.received();
    t.clock.advance(200);
    expect(t.deaths).toHaveLength(0);
    t.clock.advance(50);
    expect(t.deaths).toHaveLength(1);
    expect(t.deaths[0]).toMatchObject({ code: 'DCPX_ERR_PEER_SILENT' });
    expect(t.deaths[0]!.message).toBe('peer silent for 200 ms');
  });

  it('stays alive while frames keep arriving, whatever the NOOP count', () => {
    const t = setup({ silentIntervals: 2, maxOutstanding: Number.POSITIVE_INFINITY });
    for (let i = 0; i < 100; i++) {
      t.clock.advance(30);
      t.liveness.received();
    }
    expect(t.deaths).toHaveLength(0);
    expect(t.probes()).toBe(30);
  });

  it('probes only when asked to (a consumer NOOPs only while no stream is open)', () => {
    let idle = false;
    const t = setup({
      silentIntervals: 2,
      maxOutstanding: Number.POSITIVE_INFINITY,
      shouldProbe: () => idle,
    });
    t.clock.advance(100);
    t.liveness.received();
    expect(t.probes()).toBe(0);
    idle = true;
    t.clock.advance(100);
    expect(t.probes()).toBe(1);
    t.liveness.answered();
    t.clock.advance(100);
    expect(t.probes()).toBe(2);
    expect(t.deaths).toHaveLength(0);
  });

  it('does nothing after stop: no NOOP, no verdict, no timer left', () => {
    const t = setup({ maxOutstanding: 1 });
    t.clock.advance(100);
    t.liveness.stop();
    t.clock.advance(1_000);
    expect(t.probes()).toBe(1);
    expect(t.deaths).toHaveLength(0);
    expect(t.clock.pending).toBe(0);
    t.liveness.start();
    expect(t.clock.pending).toBe(0);
  });

  it('refuses a non-positive interval', () => {
    expect(() => new Liveness({ intervalMs: 0, probe() {}, dead() {} })).toThrow(RangeError);
  });
});
