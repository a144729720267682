import { ExpectationError, type Trace } from './live.js';
import type { ScenarioResult } from './report.js';
import { checkConversation, describe, type RuleId, type RuleOptions, type Violation } from './rules.js';

// What the producer and consumer kits share: a scenario is a named check citing a dcp-spec section,
// run in order; a thrown ExpectationError fails it with its reason and frames, a Skip skips it.

export class Skip extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'Skip';
  }
}

/** What a scenario body returns when it passes: a one-line summary. */
export type Passed = string;

export interface Scenario<C> {
  id: string;
  title: string;
  spec: string;
  run(ctx: C): Promise<Passed>;
}

export async function runScenarios<C>(
  scenarios: readonly Scenario<C>[],
  ctx: C,
  trace: Trace,
  onResult?: (r: ScenarioResult) => void,
): Promise<ScenarioResult[]> {
  const results: ScenarioResult[] = [];
  for (const s of scenarios) {
    const base = { id: s.id, title: s.title, spec: s.spec };
    let result: ScenarioResult;
    try {
      const reason = await s.run(ctx);
      result = { ...base, outcome: 'pass', reason, frames: [] };
    } catch (error) {
      if (error instanceof Skip) result = { ...base, outcome: 'skip', reason: error.message, frames: [] };
      else if (error instanceof ExpectationError)
        result = { ...base, outcome: 'fail', reason: error.message, frames: framesOf(trace, error.frames) };
      else
        result = {
          ...base,
          outcome: 'fail',
          reason: `error: ${String((error as Error)?.message ?? error)}`,
          frames: [],
        };
    }
    results.push(result);
    onResult?.(result);
  }
  return results;
}

export function framesOf(trace: Trace, seqs: readonly number[]): { seq: number; what: string }[] {
  const bySeq = new Map(trace.frames.map((t) => [t.seq, t]));
  return [...new Set(seqs)].map((seq) => {
    const t = bySeq.get(seq);
    return { seq, what: t ? `${t.from === 'producer' ? 'P→C' : 'C→P'} ${describe(t.frame)}` : '' };
  });
}

/** Fails with the first violation of `rules` in the frames of `conns`. */
export function expectRules(
  trace: Trace,
  conns: readonly string[],
  rules: readonly RuleId[],
  options: RuleOptions = {},
): Violation[] {
  const violations = checkConversation(trace.of(conns), { ...options, rules });
  if (violations.length > 0) {
    const first = violations[0]!;
    const more = violations.length > 1 ? ` (and ${violations.length - 1} more)` : '';
    throw new ExpectationError(
      `${first.rule}: ${first.reason}${more}`,
      violations.flatMap((v) => v.frames),
    );
  }
  return violations;
}

export function expect(condition: unknown, reason: string, frames: number[] = []): asserts condition {
  if (!condition) throw new ExpectationError(reason, frames);
}

export function hex(n: number): string {
  return `0x${n.toString(16).padStart(2, '0')}`;
}
