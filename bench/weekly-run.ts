/**
 * What the weekly-enrich bench measures: one run of the pipeline through executeRun, timed
 * step by step from its events with the process's memory sampled meanwhile, and the bare
 * loop it is compared with (the enrich phase's work without the engine).
 */
import { businessMigrations } from '../steps/tables.ts';
import { readFileSync } from 'node:fs';
import { semrushConnector } from '../connectors/semrush/connector.ts';
import { spyfuConnector } from '../connectors/spyfu/connector.ts';
import { ManualClock } from '../engine/clock.ts';
import { configSection, type EngineConfig } from '../engine/config.ts';
import { type Database, openDatabase } from '../engine/db/connect.ts';
import { RunEvents } from '../engine/events.ts';
import { executeRun, type RunResult } from '../engine/executor/run.ts';
import { silentLogger } from '../engine/log.ts';
import type { Pipeline } from '../engine/pipeline/types.ts';
import { Resources } from '../engine/resources.ts';
import { insertSql } from '../engine/sql-insert.ts';
import { RunStore } from '../engine/store/index.ts';
import { type Categories, categorise } from '../steps/prospects/categorise.ts';
import { INTEL_SOURCE } from '../steps/prospects/census.ts';
import { mergeDuplicates, type Source, toProspect } from '../steps/prospects/sources.ts';
import { collectIntel, DEFAULT_LIMITS } from '../steps/intel/collect.ts';
import { openFreshPostgres } from '../test/helpers/db.ts';
import { PIPELINES_DIR } from './report-kit.ts';
import { SOURCE } from './weekly-data.ts';

/** Sunday 29 November 2026, 22:00 in London: when the schedule fires. */
export const SUNDAY_NIGHT = new Date('2026-11-29T22:00:00Z');
export const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';
export type DbKind = 'pglite' | 'postgres';

const MB = 1024 * 1024;

/** The process's RSS and heap every 100 ms: the peak overall and per label (the running step). */
export class MemorySampler {
  startRssMb = NaN;
  peakRssMb = 0;
  peakHeapMb = 0;
  /** Memory outside the JS heap that V8 knows of (ArrayBuffers: PGlite's wasm memory and files). */
  peakExternalMb = 0;
  readonly byLabel = new Map<string, number>();
  label = '-';
  private timer: NodeJS.Timeout | undefined;

  start(): this {
    this.sample();
    this.timer = setInterval(() => this.sample(), 100);
    return this;
  }
  stop(): void {
    this.sample();
    clearInterval(this.timer);
  }
  private sample(): void {
    const m = process.memoryUsage();
    const rss = m.rss / MB;
    if (Number.isNaN(this.startRssMb)) this.startRssMb = rss;
    this.peakExternalMb = Math.max(this.peakExternalMb, m.external / MB);
    this.peakRssMb = Math.max(this.peakRssMb, rss);
    this.peakHeapMb = Math.max(this.peakHeapMb, m.heapUsed / MB);
    this.byLabel.set(this.label, Math.max(this.byLabel.get(this.label) ?? 0, rss));
  }
}

/** A fresh database of the kind: in memory, or a new Postgres database dropped on close. */
export async function freshDatabase(kind: DbKind): Promise<Database> {
  if (kind === 'pglite') return openDatabase({ dataDir: 'memory://', migrations: businessMigrations });
  return openFreshPostgres(PG_URL, 'flows_bench');
}

/** Resources as the daemon makes them: connectors without keys answer from in-process sandboxes. */
export const benchResources = (config: EngineConfig, clock: ManualClock, stateDir: string) =>
  new Resources({ config, env: {}, log: silentLogger, clock, projectDir: PIPELINES_DIR, stateDir });

export interface StepTiming {
  id: string;
  ms: number;
  items?: number;
  peakRssMb: number;
}

export interface MeasuredRun {
  result: RunResult;
  wallMs: number;
  /** Steps that started; one that did not finish (the run stopped in it) is timed to the run's end. */
  steps: StepTiming[];
  /** Milliseconds from the run's start at which each enrich item finished, in order. */
  enrichDone: number[];
  startRssMb: number;
  peakRssMb: number;
  peakHeapMb: number;
  peakExternalMb: number;
}

/** One executeRun, each step timed from its step:start to its step:finish event. */
export async function measuredRun(options: {
  pipeline: Pipeline;
  config: EngineConfig;
  db: Database;
  clock: ManualClock;
  resources: Resources;
  dryRun?: boolean;
  outDir?: string;
}): Promise<MeasuredRun> {
  const events = new RunEvents();
  const sampler = new MemorySampler().start();
  const started = new Map<string, number>();
  const finished = new Map<string, number>();
  events.on('step:start', ({ stepId }) => {
    started.set(stepId, performance.now());
    sampler.label = stepId;
  });
  events.on('step:finish', ({ stepId }) => {
    finished.set(stepId, performance.now());
    sampler.label = '-';
  });
  const t0 = performance.now();
  const enrichDone: number[] = [];
  events.on('item:done', ({ stepId }) => {
    if (stepId === 'enrich') enrichDone.push(performance.now() - t0);
  });
  let result: RunResult;
  try {
    result = await executeRun({ ...options, store: new RunStore(options.db), events, projectDir: PIPELINES_DIR });
  } finally {
    sampler.stop();
  }
  const ended = performance.now();
  const steps = result.steps
    .filter((s) => started.has(s.id))
    .map((s) => ({
      id: s.id,
      ms: (finished.get(s.id) ?? ended) - started.get(s.id)!,
      items: s.items?.total,
      peakRssMb: sampler.byLabel.get(s.id) ?? NaN,
    }));
  const { startRssMb, peakRssMb, peakHeapMb, peakExternalMb } = sampler;
  return { result, wallMs: ended - t0, steps, enrichDone, startRssMb, peakRssMb, peakHeapMb, peakExternalMb };
}

/** What the run left in the database, and how big the engine's own records are. */
export interface RunFootprint {
  prospects: number;
  enriched: number;
  selected: number;
  reports: number;
  /** Average bytes of a domain's search data (prospect_intelligence.data as JSON text). */
  intelAvgBytes: number;
  /** Bytes of each step's recorded output (flow_steps.output as JSON text). */
  stepOutputBytes: Record<string, number>;
  /** Bytes on disk of the tables the run writes (with their indexes and TOAST). */
  tableBytes: Record<string, number>;
}

const TABLES = ['prospects', 'prospect_intelligence', 'flow_steps', 'flow_items', 'flow_effects', 'flow_budget_ledger', 'generated_reports'];

export async function footprint(db: Database, runId: string): Promise<RunFootprint> {
  const count = async (sql: string) => Number((await db.query<{ n: string | number }>(sql))[0]!.n);
  const outputs = await db.query<{ step_id: string; bytes: number }>('SELECT step_id, coalesce(octet_length(output::text), 0) AS bytes FROM flow_steps WHERE run_id = $1', [runId]);
  const sizes = await db.query<{ relname: string; bytes: string | number }>('SELECT relname, pg_total_relation_size(oid) AS bytes FROM pg_class WHERE relname = ANY($1::text[])', [TABLES]);
  return {
    prospects: await count('SELECT count(*) AS n FROM prospects'),
    enriched: await count(`SELECT count(*) AS n FROM prospect_intelligence WHERE source = '${INTEL_SOURCE}'`),
    selected: await count('SELECT count(*) AS n FROM linkedin_selections'),
    reports: await count('SELECT count(*) AS n FROM generated_reports'),
    intelAvgBytes: await count('SELECT coalesce(avg(octet_length(data::text)), 0) AS n FROM prospect_intelligence'),
    stepOutputBytes: Object.fromEntries(outputs.map((o) => [o.step_id, Number(o.bytes)])),
    tableBytes: Object.fromEntries(TABLES.map((t) => [t, Number(sizes.find((s) => s.relname === t)?.bytes ?? NaN)])),
  };
}

export interface BareResult {
  domains: number;
  ms: number;
  peakRssMb: number;
}

/**
 * The enrich phase without the engine: the prospects of the config's CSV inserted first
 * (untimed), then per domain, 10 at a time, collectIntel against the same kind of sandboxes,
 * the upsert into prospect_intelligence that sql.upsert sends, and the category UPDATE.
 */
export async function bareEnrich(db: Database, config: EngineConfig, clock: ManualClock, resources: Resources, concurrency = 10): Promise<BareResult> {
  const source = configSection<Record<string, Source>>(config, 'prospect_sources')![SOURCE]!;
  const { parse } = await import('csv-parse/sync');
  const records = parse(readFileSync(source.path!, 'utf8'), { columns: true, skip_empty_lines: true, relax_column_count: true, trim: true }) as Record<string, unknown>[];
  const { rows } = mergeDuplicates(records.map((r, i) => toProspect({ values: r, number: i + 1 }, SOURCE, source)));
  const valid = rows.filter((r) => !r.problem);
  for (let at = 0; at < valid.length; at += 500) {
    const page = valid.slice(at, at + 500);
    const shape = { table: 'prospects', columns: ['domain', 'company_name', 'contact_name', 'email', 'linkedin_url', 'source'] };
    await db.query(
      insertSql(shape, page.length),
      page.flatMap((r) => [r.domain, r.company_name, r.contact_name, r.email, r.linkedin_url, r.source]),
    );
  }
  const targets = await db.query<{ id: string; domain: string }>('SELECT id, domain FROM prospects WHERE domain IS NOT NULL ORDER BY domain');

  const categories = configSection<Categories>(config, 'categories')!;
  const [semrush, spyfu] = await Promise.all([resources.use(semrushConnector), resources.use(spyfuConnector)]);
  const upsert = insertSql({ table: 'prospect_intelligence', columns: ['prospect_id', 'domain', 'source', 'data', 'fetched_at'], conflict: ['domain', 'source'] }, 1);
  const sampler = new MemorySampler().start();
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < targets.length) {
      const { id, domain } = targets[next++]!;
      const intel = await collectIntel({ semrush, spyfu, now: () => clock.now() }, domain, undefined, DEFAULT_LIMITS);
      await db.query(upsert, [id, domain, INTEL_SOURCE, intel, clock.now().toISOString()]);
      const { category, reason } = categorise(categories, intel);
      await db.query('UPDATE prospects SET category = $2, category_reason = $3, updated_at = now() WHERE domain = $1 RETURNING id', [domain, category, reason]);
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    sampler.stop();
  }
  return { domains: targets.length, ms: performance.now() - t0, peakRssMb: sampler.peakRssMb };
}
