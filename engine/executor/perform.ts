import { DeferredError, errorMessage, findCause, NonRetriableError } from '../errors.ts';
import { gatesOf } from '../flow-control/index.ts';
import type { Reservation, Write, WriteOutcome } from '../ledger/types.ts';
import type { EffectRow } from '../store/records.ts';
import { type AttemptHandle, withRetries } from './attempt.ts';
import type { RunContext } from './context.ts';
import type { Call, InvokeResult } from './invoke.ts';
import { stepContext } from './step-context.ts';
import { waitForGate } from './wait.ts';

type Reserved = Extract<Reservation, { state: 'reserved' }>;

/**
 * A call in a real run. Every path passes the same flow control: the rate limit admits each
 * attempt; quota and budget gates reserve in the effect ledger's transaction, with the
 * effect's key. Three shapes of call:
 *
 * - a read with no gate: attempts, nothing recorded (the hot path of a foreach of GETs);
 * - a database write: performed with its key in one transaction (or one statement), exactly once;
 * - an outside effect or a gated read: reserved, performed with retries, confirmed (or released
 *   when it failed before happening); a confirmed effect is never performed again.
 */
export async function performCall(rc: RunContext, call: Call): Promise<InvokeResult> {
  if (!call.kind && !call.gated) return attempts(rc, call, (ctx) => call.step.type.run(ctx, call.input));
  if (call.effect && call.step.type.effect?.transactional) return writeOnce(rc, call);
  return performReserved(rc, call);
}

/** Runs `fn` with the step's retries, timeout and rate limit; each attempt gets a step context. */
function attempts<T>(rc: RunContext, call: Call, fn: (ctx: ReturnType<typeof stepContext>) => Promise<T>, spent?: Record<string, number>, quotaKey?: string) {
  return retried(rc, call, (attempt) => fn(stepContext(rc, call, { attempt, db: rc.db, spent, quotaKey })));
}

function retried<T>(rc: RunContext, call: Call, fn: (attempt: AttemptHandle) => Promise<T>, bare = false) {
  const { step } = call;
  return withRetries(fn, {
    policy: step.retry,
    timeoutMs: step.timeoutMs,
    abort: rc.abort,
    clock: rc.clock,
    bare,
    gate: step.rateLimit ? (attempt) => rc.rateLimits.schedule(step.rateLimit!, attempt) : undefined,
    onRetry: (err, attempt, delayMs) => rc.log.warn({ step: step.id, item: call.itemKey, err: errorMessage(err), attempt, delayMs: Math.round(delayMs) }, 'attempt failed, retrying'),
  }).then((r) => ({ output: r.value as unknown, attempts: r.attempts }));
}

async function writeOnce(rc: RunContext, call: Call): Promise<InvokeResult> {
  const spec = call.step.type.effect!;
  const first = { number: 1, signal: rc.abort };
  const statement = spec.statement?.(call.input, stepContext(rc, call, { attempt: first, db: rc.db }));
  const write: Write = statement ? { statement } : { run: (db) => call.step.type.run(stepContext(rc, call, { attempt: first, db }), call.input) };
  const gates = call.gated ? gatesOf(rc.flow, rc.store, call.gated) : [];
  for (;;) {
    // A statement cannot be abandoned halfway: the write needs no signal or race of its own.
    const { output: outcome, attempts: n } = await retried(rc, call, () => rc.store.effects.write(call.effect!, gates, write, rc.clock.now()), true);
    const result = outcome as WriteOutcome;
    if (result.state === 'wait') {
      await waitForGate(rc, result);
      continue;
    }
    const recorded = result.state === 'written' ? result.output : result.row.output;
    const output = statement ? statement.output((recorded as { rows?: Record<string, unknown>[] } | null)?.rows ?? []) : recorded;
    done(rc, call, result.state === 'done');
    return { output, attempts: n };
  }
}

async function performReserved(rc: RunContext, call: Call): Promise<InvokeResult> {
  const gates = call.gated ? gatesOf(rc.flow, rc.store, call.gated) : [];
  for (;;) {
    let reservation: Reservation;
    for (;;) {
      reservation = await rc.store.effects.reserve(call.effect, gates, rc.clock.now());
      if (reservation.state !== 'wait') break;
      await waitForGate(rc, reservation);
    }
    if (reservation.state === 'done') {
      done(rc, call, true);
      return { output: reservation.row.output, attempts: 0 };
    }
    if (reservation.state === 'in-doubt') reservation = await repeatInDoubt(rc, call, reservation.row);
    const spent: Record<string, number> = {};
    let result: InvokeResult;
    try {
      const picked = reservation.holds.find((h) => h.picked)?.picked;
      result = await attempts(rc, call, (ctx) => call.step.type.run(ctx, call.input), spent, picked);
    } catch (err) {
      await rc.store.effects.release(call.effect, reservation, spent);
      // Did not happen, try later: nothing is held while the item waits, so a restart meanwhile repeats nothing.
      const deferred = findCause(err, DeferredError);
      if (deferred) {
        await waitForGate(rc, { until: deferred.until, reason: deferred.message, scope: 'item' });
        continue;
      }
      throw err;
    }
    return confirmed(rc, call, reservation, result, spent);
  }
}

async function confirmed(rc: RunContext, call: Call, reservation: Reserved, result: InvokeResult, spent: Record<string, number>): Promise<InvokeResult> {
  // Not released if this fails: the effect happened, and stays in doubt rather than repeated.
  await rc.store.effects.confirm(call.effect, reservation, result.output, rc.clock.now(), { transient: call.step.type.effect?.transientOutput, spent });
  if (call.effect) done(rc, call, false);
  return result;
}

/**
 * An effect started by an earlier attempt that never reported back. It is performed again
 * only where that is safe: the provider deduplicates by our key, or the step says a repeat is
 * harmless (`in_doubt: repeat`, a read); the repeat is counted in the run's summary.
 * Otherwise a person settles it, with what identifies it outside.
 */
async function repeatInDoubt(rc: RunContext, call: Call, row: EffectRow): Promise<Reserved> {
  const safe = call.step.type.effect?.providerIdempotent?.(call.input) || call.step.inDoubt === 'repeat';
  if (!safe) {
    const identity = row.identity ? ` (${Object.entries(row.identity).map(([k, v]) => `${k}: ${v}`).join(', ')})` : '';
    throw new NonRetriableError(
      `effect ${row.key}${identity} was started by run ${row.run_id} but never confirmed (the process stopped in the middle); ` +
        `it may have happened, so it is not repeated. Check the outside system, then run: flows effects resolve ${row.key} --happened (or --did-not-happen)`,
    );
  }
  await rc.store.effects.repeat(row.key);
  rc.state.repeated.push({ step: call.step.id, key: row.key });
  rc.log.info({ step: call.step.id, key: row.key }, 'effect in doubt after a crash: performing it again (the step allows it)');
  return { state: 'reserved', holds: [] };
}

function done(rc: RunContext, call: Call, repeated: boolean): void {
  if (repeated) rc.log.info({ step: call.step.id, key: call.effectKey }, 'effect already done; not repeating it');
  rc.events.emit('effect:done', { runId: rc.runId, stepId: call.step.id, key: call.effectKey ?? '', kind: call.kind ?? 'call', repeated });
}
