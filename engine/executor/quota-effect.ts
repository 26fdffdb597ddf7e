import { CompiledQuery } from 'kysely';
import { parseSpacing } from '../config.ts';
import type { CallStep } from '../pipeline/types.ts';
import { QuotaCalendar } from '../quota/calendar.ts';
import { countedStretch, decide, StoppedWaitingError } from '../quota/ledger.ts';
import type { Reservation } from '../store.ts';
import type { Queryable, StepContext } from '../types.ts';
import type { RunContext } from './context.ts';
import { performOutside, repeated } from './outside-effect.ts';
import { statementOutput } from './write-batch.ts';

type Effect = { key: string; runId: string; stepId: string; itemKey: string; kind: string; summary: string; now: Date; quota: string; quotaKey: string };

/**
 * An effect under a quota. In one transaction, holding the quota's lock: count what the
 * current period has spent, and reserve the key only if there is room (a database write
 * also happens there). Otherwise wait for the period with room, then try again: work
 * beyond the window waits, it is never dropped and never done early. The lock makes the
 * cap hold across concurrent items, processes and machines on one Postgres.
 */
export async function performUnderQuota(
  rc: RunContext,
  step: CallStep,
  kind: string,
  effect: Effect,
  input: Record<string, unknown>,
  context: (db: Queryable) => StepContext,
): Promise<unknown> {
  const quota = rc.config.quotas![effect.quota]!;
  const calendar = calendarOf(rc, effect.quota);
  const spacing = quota.spacing ? parseSpacing(quota.spacing) : undefined;
  // Whole milliseconds: a Date cannot hold a fraction, and a wait must end after the gap.
  const gapMs = spacing ? Math.ceil(spacing.minMs + Math.random() * (spacing.maxMs - spacing.minMs)) : 0;
  const spec = step.type.effect!;
  const statement = spec.transactional ? spec.statement?.(input, context(rc.db)) : undefined;

  for (;;) {
    type Outcome =
      | { kind: 'earlier'; reservation: Exclude<Reservation, { state: 'reserved' }> }
      | { kind: 'wait'; until: Date; reason: string }
      | { kind: 'reserved' }
      | { kind: 'written'; output: unknown };
    const outcome = await rc.store.kysely.transaction().execute(async (trx): Promise<Outcome> => {
      await rc.store.lockQuota(trx, effect.quota, effect.quotaKey);
      const [earlier] = await rc.store.effectsByKeys(trx, [effect.key]);
      if (earlier) return { kind: 'earlier', reservation: earlier.status === 'done' ? { state: 'done', row: earlier } : { state: 'in-doubt', row: earlier } };
      const now = rc.clock.now();
      const stretch = countedStretch(quota, calendar.periodFrom(now), now);
      const use = await rc.store.quotaUse(trx, effect.quota, effect.quotaKey, stretch.from, stretch.to);
      const decision = decide(effect.quota, quota, calendar, now, use, gapMs);
      if (!decision.ok) return { kind: 'wait', until: decision.until, reason: decision.reason };
      await rc.store.reserveEffect(trx, { ...effect, now });
      if (!spec.transactional) return { kind: 'reserved' };
      const db: Queryable = {
        writable: true,
        query: async <R>(text: string, params: readonly unknown[] = []) => (await trx.executeQuery<R>(CompiledQuery.raw(text, [...params]))).rows as R[],
      };
      const output = statement ? { rows: await db.query(statement.sql, statement.params) } : await step.type.run(context(db), input);
      await rc.store.completeEffect(trx, effect.key, output, now);
      return { kind: 'written', output };
    });

    const asOutput = (recorded: unknown) => statementOutput(statement, recorded);
    switch (outcome.kind) {
      case 'wait':
        await waitForQuota(rc, outcome.until, outcome.reason);
        continue;
      case 'written':
        rc.events.emit('effect:done', { runId: rc.runId, stepId: step.id, key: effect.key, kind, repeated: false });
        return asOutput(outcome.output);
      case 'earlier':
        if (spec.transactional) return repeated(rc, step, kind, effect.key, asOutput(outcome.reservation.row.output));
        return performOutside(rc, step, kind, effect.key, input, context, outcome.reservation);
      case 'reserved':
        return performOutside(rc, step, kind, effect.key, input, context, { state: 'reserved' });
    }
  }
}

/** The calendar of a quota, built once per run. */
export function calendarOf(rc: RunContext, name: string): QuotaCalendar {
  let calendar = rc.calendars.get(name);
  if (!calendar) {
    calendar = new QuotaCalendar(rc.config.quotas![name]!, rc.config.business?.timezone ?? 'UTC');
    rc.calendars.set(name, calendar);
  }
  return calendar;
}

/** Sleeps until the quota has room, saying so on the run; a stop request ends the wait. */
async function waitForQuota(rc: RunContext, until: Date, reason: string): Promise<void> {
  if (until <= rc.clock.now()) return;
  if (rc.waiting?.until.getTime() !== until.getTime()) {
    rc.waiting = { until, reason };
    await rc.store.setRunWaiting(rc.runId, until, reason);
    rc.log.info({ until: until.toISOString(), reason }, 'waiting for a quota window');
  }
  rc.events.emit('quota:wait', { runId: rc.runId, until, reason });
  if (rc.park && until.getTime() - rc.clock.now().getTime() > rc.park.afterMs) {
    rc.park.until = rc.park.until && rc.park.until < until ? rc.park.until : until;
    rc.park.controller.abort();
    throw new StoppedWaitingError(until);
  }
  try {
    await rc.clock.sleepUntil(until, AbortSignal.any([rc.stop, rc.abort]));
  } catch {
    throw new StoppedWaitingError(until);
  }
}
