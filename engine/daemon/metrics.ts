import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Clock } from '../clock.ts';
import type { EngineConfig } from '../config.ts';
import { flowControlOf } from '../flow-control/index.ts';
import { quotaReports } from '../flow-control/report.ts';
import type { RunStore } from '../store/index.ts';
import type { EventDispatcher } from './dispatcher.ts';
import type { RunQueue } from './queue.ts';

/**
 * The daemon's Prometheus metrics. Counts that live in the database (runs by status,
 * effects by kind, quota use, queue depth) are read when scraped, so every daemon on one
 * database reports the same totals; what happens in this process (webhook answers and
 * their latency, runs this daemon finished) is counted here.
 */
export class DaemonMetrics {
  readonly registry = new Registry();
  readonly webhookResponses: Counter<'route' | 'status'>;
  readonly webhookSeconds: Histogram<'route'>;
  readonly runsFinished: Counter<'pipeline' | 'status'>;
  private readonly pageCounters = new Map<string, Counter<string>>();

  constructor(deps: { store: RunStore; queue: RunQueue; dispatcher: EventDispatcher; config: EngineConfig; clock: Clock }) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'flows_process_' });
    this.webhookResponses = new Counter({
      name: 'flows_webhook_responses_total',
      help: 'Webhook requests answered, by route and HTTP status.',
      labelNames: ['route', 'status'],
      registers,
    });
    this.webhookSeconds = new Histogram({
      name: 'flows_webhook_duration_seconds',
      help: 'Time to answer a webhook request.',
      labelNames: ['route'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1],
      registers,
    });
    this.runsFinished = new Counter({
      name: 'flows_daemon_runs_finished_total',
      help: 'Runs this daemon executed to an end (or parked, or handed back), by pipeline and status.',
      labelNames: ['pipeline', 'status'],
      registers,
    });
    const db = deps.store.kysely;
    new Gauge({
      name: 'flows_runs',
      help: 'Runs in the database, by pipeline and status (dry runs excluded).',
      labelNames: ['pipeline', 'status'],
      registers,
      async collect() {
        this.reset();
        const rows = await db
          .selectFrom('flow_runs')
          .select(['pipeline', 'status', (eb) => eb.fn.countAll<number>().as('n')])
          .where('dry_run', '=', false)
          .groupBy(['pipeline', 'status'])
          .execute();
        for (const r of rows) this.set({ pipeline: r.pipeline, status: r.status }, Number(r.n));
      },
    });
    new Gauge({
      name: 'flows_effects',
      help: 'Effects recorded, by kind and status (reserved = started, not yet confirmed).',
      labelNames: ['kind', 'status'],
      registers,
      async collect() {
        this.reset();
        const rows = await db
          .selectFrom('flow_effects')
          .select(['kind', 'status', (eb) => eb.fn.countAll<number>().as('n')])
          .groupBy(['kind', 'status'])
          .execute();
        for (const r of rows) this.set({ kind: r.kind, status: r.status }, Number(r.n));
      },
    });
    new Gauge({
      name: 'flows_quota_used',
      help: "Effects counted against each quota in its current period (per key where it counts per key).",
      labelNames: ['quota', 'key', 'period'],
      registers,
      async collect() {
        this.reset();
        for (const r of await quotaReports(flowControlOf(deps.config), deps.store.quotas, deps.store.db, deps.clock.now())) {
          for (const c of r.caps) this.set({ quota: r.quota, key: r.key ?? '', period: c.period }, c.used);
        }
      },
    });
    new Gauge({
      name: 'flows_quota_cap',
      help: "Each quota's cap per period at this moment (less than configured on a ramp day), per key.",
      labelNames: ['quota', 'key', 'period'],
      registers,
      async collect() {
        this.reset();
        for (const r of await quotaReports(flowControlOf(deps.config), deps.store.quotas, deps.store.db, deps.clock.now())) {
          for (const c of r.caps) this.set({ quota: r.quota, key: r.key ?? '', period: c.period }, c.today);
        }
      },
    });
    new Gauge({
      name: 'flows_quota_paused',
      help: 'Quotas (and keys) paused by a person or a rule: 1 while paused, with the reason (a bounce rate, a person\'s words).',
      labelNames: ['quota', 'key', 'reason'],
      registers,
      async collect() {
        this.reset();
        for (const p of await deps.store.quotas.pauses(deps.clock.now())) this.set({ quota: p.quota, key: p.key, reason: p.reason.slice(0, 120) }, 1);
      },
    });
    new Gauge({
      name: 'flows_queue_depth',
      help: 'Runs queued and not yet picked up by a worker.',
      registers,
      async collect() {
        this.set(await deps.queue.depth());
      },
    });
    new Gauge({
      name: 'flows_events_undispatched',
      help: 'Recorded events not yet handed to the pipelines they trigger.',
      registers,
      async collect() {
        this.set(await deps.dispatcher.backlog());
      },
    });
  }

  /** A counter a page adds to (clicks by class ...), registered on first use; one name is one counter. */
  pageCounter(name: string, help: string, labelNames: readonly string[]): Counter<string> {
    let counter = this.pageCounters.get(name);
    if (!counter) {
      counter = new Counter({ name, help, labelNames: [...labelNames], registers: [this.registry] });
      this.pageCounters.set(name, counter);
    }
    return counter;
  }
}
