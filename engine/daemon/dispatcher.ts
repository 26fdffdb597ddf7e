import type { Database } from '../db/connect.ts';
import { errorMessage } from '../errors.ts';
import { renderDeep } from '../expr/index.ts';
import type { Logger } from '../log.ts';
import { resolveInputs } from '../pipeline/inputs.ts';
import type { Pipeline } from '../pipeline/types.ts';
import type { RunClaims } from './claims.ts';

export interface Dispatched {
  event: string;
  type: string;
  pipeline: string;
  action: 'started' | 'deduplicated' | 'ignored' | 'invalid';
  runId?: string;
  reason?: string;
}

const BATCH = 100;

/**
 * Hands recorded events (the events table: event.emit steps, webhook routes) to the
 * pipelines whose trigger names them. The table is the outbox: an event is marked
 * dispatched in the transaction that queues its runs, so each event starts its runs once,
 * and several daemons split the backlog (FOR UPDATE SKIP LOCKED).
 *
 * A trigger's dedupe key and window ("one run per prospect per 30 days") are checked under
 * an advisory lock on the key, so two events for one prospect cannot both pass.
 */
export class EventDispatcher {
  constructor(
    private readonly db: Database,
    private readonly claims: RunClaims,
    private readonly log: Logger,
  ) {}

  /** Dispatches one batch; call until it returns fewer than a batch's worth. */
  async dispatch(pipelines: readonly Pipeline[], now: Date): Promise<{ events: number; outcomes: Dispatched[] }> {
    const listeners = pipelines.filter((p) => p.trigger.kind === 'event');
    const result = await this.db.kysely.transaction().execute(async (trx) => {
      const events = await trx
        .selectFrom('flow_events')
        .selectAll()
        .where('dispatched_at', 'is', null)
        .orderBy('occurred_at')
        .limit(BATCH)
        .forUpdate()
        .skipLocked()
        .execute();
      const outcomes: Dispatched[] = [];
      for (const e of events) {
        const event = { id: e.id, type: e.type, key: e.key, payload: e.payload, run_id: e.run_id, occurred_at: new Date(e.occurred_at).toISOString() };
        for (const pipeline of listeners) {
          const trigger = pipeline.trigger;
          if (trigger.kind !== 'event' || trigger.name !== e.type) continue;
          const base = { event: e.id, type: e.type, pipeline: pipeline.name };
          let inputs: Record<string, unknown>;
          let dedupeKey: string | undefined;
          try {
            const scope = { event };
            if (trigger.when && !trigger.when.holds(scope)) {
              outcomes.push({ ...base, action: 'ignored', reason: `${pipeline.name} starts only when ${trigger.when.source}` });
              continue;
            }
            inputs = resolveInputs(pipeline, trigger.inputs ? (renderDeep(trigger.inputs, scope) as Record<string, unknown>) : { event });
            if (trigger.dedupe) {
              const key = renderDeep(trigger.dedupe.key, scope);
              dedupeKey = key === undefined || key === null || key === '' ? undefined : String(key);
            }
          } catch (err) {
            outcomes.push({ ...base, action: 'invalid', reason: errorMessage(err) });
            continue;
          }
          if (trigger.dedupe && dedupeKey !== undefined) {
            await this.claims.lock(trx, `${pipeline.name}\u001f${dedupeKey}`);
            const earlier = await trx
              .selectFrom('flow_trigger_keys')
              .select('run_id')
              .where('pipeline', '=', pipeline.name)
              .where('dedupe_key', '=', dedupeKey)
              .where('fired_at', '>', new Date(now.getTime() - trigger.dedupe.windowMs))
              .limit(1)
              .executeTakeFirst();
            if (earlier) {
              outcomes.push({ ...base, action: 'deduplicated', runId: earlier.run_id, reason: `run ${earlier.run_id} already started for ${dedupeKey}` });
              continue;
            }
          }
          const runId = await this.claims.enqueueNew(trx, { pipeline, inputs, trigger: 'event', ref: e.id, now });
          if (dedupeKey !== undefined) await trx.insertInto('flow_trigger_keys').values({ pipeline: pipeline.name, dedupe_key: dedupeKey, run_id: runId, fired_at: now }).execute();
          outcomes.push({ ...base, action: 'started', runId });
        }
      }
      if (events.length) {
        await trx
          .updateTable('flow_events')
          .set({ dispatched_at: now })
          .where(
            'id',
            'in',
            events.map((e) => e.id),
          )
          .execute();
      }
      return { events: events.length, outcomes };
    });
    for (const o of result.outcomes) {
      const line = { event: o.event, type: o.type, pipeline: o.pipeline, run: o.runId };
      if (o.action === 'invalid') this.log.warn({ ...line, err: o.reason }, 'event not dispatched: its inputs are invalid');
      else if (o.action === 'ignored') this.log.debug({ ...line, reason: o.reason }, 'event does not meet the trigger condition');
      else this.log.info(line, o.action === 'started' ? 'event started a run' : `event deduplicated: ${o.reason}`);
    }
    return result;
  }

  /** Events not yet dispatched (for metrics). */
  async backlog(): Promise<number> {
    const row = await this.db.kysely
      .selectFrom('flow_events')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('dispatched_at', 'is', null)
      .executeTakeFirst();
    return Number(row?.n ?? 0);
  }
}
