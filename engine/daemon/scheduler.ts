import { Cron } from 'croner';
import type { Database } from '../db/connect.ts';
import type { Logger } from '../log.ts';
import type { Pipeline } from '../pipeline/types.ts';
import type { RunClaims } from './claims.ts';

/** A fire counts as on time (not missed) when the daemon sees it within this long. */
export const ON_TIME_MS = 60_000;
/** `catchup: all` queues at most this many missed fires at once. */
const MAX_CATCHUP = 100;

export interface FireOutcome {
  pipeline: string;
  fire: Date;
  /** started: a run was queued; skipped: missed (catchup) or the previous run still going (overlap). */
  action: 'started' | 'skipped';
  reason: string;
  runId?: string;
}

/**
 * Fires scheduled pipelines. Each schedule's last handled fire lives in flow_schedules;
 * a tick locks that row, works out the fires since, applies the catch-up and overlap rules,
 * queues the runs and moves the mark, all in one transaction. Several daemons may tick at
 * once: the row lock makes each fire happen once.
 *
 * A schedule seen for the first time starts from now: a new pipeline does not run for
 * the past. A fire seen within a minute of its time is on time and runs; older ones were
 * missed while no daemon ran, and `catchup` says which of those run: none, the latest
 * (unless an on-time fire already covers the gap) or all (at most 100). Fire times come from croner in the pipeline's timezone (DST-correct).
 */
export class Scheduler {
  constructor(
    private readonly db: Database,
    private readonly claims: RunClaims,
    private readonly log: Logger,
  ) {}

  async tick(pipelines: readonly Pipeline[], now: Date): Promise<FireOutcome[]> {
    const outcomes: FireOutcome[] = [];
    for (const pipeline of pipelines) {
      if (pipeline.trigger.kind !== 'schedule') continue;
      outcomes.push(...(await this.tickOne(pipeline, now)));
    }
    for (const o of outcomes) this.log.info({ pipeline: o.pipeline, fire: o.fire.toISOString(), run: o.runId, action: o.action }, `schedule fire ${o.action}: ${o.reason}`);
    return outcomes;
  }

  private async tickOne(pipeline: Pipeline, now: Date): Promise<FireOutcome[]> {
    const trigger = pipeline.trigger;
    if (trigger.kind !== 'schedule') return [];
    return this.db.kysely.transaction().execute(async (trx) => {
      await trx
        .insertInto('flow_schedules')
        .values({ pipeline: pipeline.name, last_fire_at: now, updated_at: now })
        .onConflict((oc) => oc.column('pipeline').doNothing())
        .execute();
      const row = await trx.selectFrom('flow_schedules').selectAll().where('pipeline', '=', pipeline.name).forUpdate().executeTakeFirstOrThrow();
      const last = new Date(row.last_fire_at);
      const due = firesBetween(trigger.cron, trigger.timezone, last, now, MAX_CATCHUP + 1);
      if (due.length === 0) return [];

      const latest = due.at(-1)!;
      // On time: seen within a minute of its time (a busy tick is not downtime); these all
      // run. Older ones were missed while no daemon ran: the catch-up rule decides.
      const onTime = (f: Date) => now.getTime() - f.getTime() <= ON_TIME_MS;
      const current = due.filter(onTime);
      const missed = due.filter((f) => !onTime(f));
      const caughtUp = trigger.catchup === 'all' ? missed : trigger.catchup === 'last' && current.length === 0 ? missed.slice(-1) : [];
      const run = [...caughtUp, ...current];
      const outcomes: FireOutcome[] = missed
        .filter((f) => !caughtUp.includes(f))
        .map((fire) => ({ pipeline: pipeline.name, fire, action: 'skipped', reason: `missed while no daemon ran (catchup: ${trigger.catchup})` }));
      for (const fire of run) {
        const active = trigger.overlap === 'skip' ? await this.claims.activeRunOf(trx, pipeline.name) : undefined;
        if (active) {
          outcomes.push({ pipeline: pipeline.name, fire, action: 'skipped', reason: `run ${active} is still going (overlap: skip)` });
          continue;
        }
        const runId = await this.claims.enqueueNew(trx, { pipeline, inputs: {}, trigger: 'schedule', ref: fire.toISOString(), now });
        outcomes.push({ pipeline: pipeline.name, fire, action: 'started', reason: onTime(fire) ? 'on time' : 'catching up', runId });
      }
      await trx.updateTable('flow_schedules').set({ last_fire_at: latest, updated_at: now }).where('pipeline', '=', pipeline.name).execute();
      return outcomes.sort((a, b) => a.fire.getTime() - b.fire.getTime());
    });
  }

  /** The next fire of any scheduled pipeline after `now` (to sleep until it). */
  static nextFire(pipelines: readonly Pipeline[], now: Date): Date | undefined {
    let next: Date | undefined;
    for (const p of pipelines) {
      if (p.trigger.kind !== 'schedule') continue;
      const at = new Cron(p.trigger.cron, { timezone: p.trigger.timezone, paused: true }).nextRun(now);
      if (at && (!next || at < next)) next = at;
    }
    return next;
  }
}

/** Fire times in (from, to], oldest first, at most `limit` (the newest kept). */
export function firesBetween(cron: string, timezone: string, from: Date, to: Date, limit: number): Date[] {
  const job = new Cron(cron, { timezone, paused: true });
  const fires: Date[] = [];
  for (let at = job.nextRun(from); at && at <= to; at = job.nextRun(at)) {
    fires.push(at);
    if (fires.length > limit) fires.shift();
  }
  return fires;
}
