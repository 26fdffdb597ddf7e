/**
 * The weekly-enrich pipeline at its real volume, measured: 5,000 prospects imported,
 * enriched (4 SEMrush + 3 SpyFu calls each), categorised, 85 chosen for LinkedIn, analysed
 * in one Claude batch and made into PDF reports, on zero-latency sandboxes.
 *
 *   node --expose-gc --import tsx bench/weekly.ts [--prospects 5000] [--seed 1]
 *        [--db pglite | postgres | pglite,postgres] [--real-limits] [--real-budget]
 *        [--reference 1000] [--json]
 *   npm run bench:weekly -- --db postgres
 *
 * Per database kind (--db, a list; Postgres at postgres://postgres@127.0.0.1:5432/test, a
 * fresh database per run, dropped after it):
 * 1. A run of 1,000 prospects (--reference, smaller only to try the bench out), for the
 *    memory reference.
 * 2. --prospects prospects: a dry run, then the run, each on a ManualClock at Sunday 22:00
 *    London. The input (bench/weekly-data.ts) is a seeded CSV with ~2% bad rows, ~1%
 *    duplicates and ~40% LinkedIn URLs; the config is the shipped one with that CSV as its
 *    one source and, unless --real-limits, SEMrush and SpyFu limits raised to 10,000/s and 50
 *    in flight, so the engine is measured, not the APIs' limits, and unless --real-budget the
 *    budget limits x10 (the shipped weekly-api budget runs out before 5,000 domains: the run
 *    would wait for next week). The pipeline is the shipped one but for its sources line.
 *    Steps are timed from the run's events.
 * 3. Baseline: the enrich phase's work without the engine (bench/weekly-run.ts bareEnrich),
 *    10 at a time, on a fresh database holding the same prospects. Goal: engine enrich /
 *    bare loop <= 1.5 (the engine records every item, its effect keys and the budget ledger).
 * Memory goal: peak RSS of the big run <= 1.5 x that of the 1,000 run, in this process.
 *
 * Goals are printed met or not met and never fail the process. With --json the tables go to
 * stderr and stdout holds one JSON object with every figure.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../engine/clock.ts';
import { parseArgs } from './common.ts';
import { fmt, shippedConfig } from './report-kit.ts';
import { BUDGET_FACTOR, MIX, RAISED_LIMITS, writeBenchPipeline } from './weekly-data.ts';
import { type Goal, type Measured, renderMeasured } from './weekly-report.ts';
import { bareEnrich, benchResources, type DbKind, footprint, freshDatabase, measuredRun, type MeasuredRun, SUNDAY_NIGHT } from './weekly-run.ts';

const args = parseArgs(process.argv.slice(2));
const prospects = Number(args.get('prospects') ?? 5000);
if (!Number.isInteger(prospects) || prospects < 100) throw new Error(`--prospects: expected a whole number >= 100, got ${args.get('prospects')} (write e.g. --prospects 5000)`);
const seed = Number(args.get('seed') ?? 1);
/** The memory reference's size (a smaller one only to try the bench out quickly). */
const SMALL = Number(args.get('reference') ?? 1000);
if (!Number.isInteger(SMALL) || SMALL < 10) throw new Error(`--reference: expected a whole number >= 10, got ${args.get('reference')} (the default is 1000)`);
const dbs = (args.get('db') ?? 'pglite').split(',').map((s) => s.trim()) as DbKind[];
for (const d of dbs) if (d !== 'pglite' && d !== 'postgres') throw new Error(`--db: expected pglite, postgres or both (pglite,postgres), got "${d}"`);
const realLimits = args.has('real-limits');
const realBudget = args.has('real-budget');
const json = args.has('json');
const say = (s: string) => process.stderr.write(`${s}\n`);
const gc = () => (globalThis as { gc?: () => void }).gc?.();
const started = performance.now();
const state = mkdtempSync(join(tmpdir(), 'flows-bench-weekly-'));

/** The dry run (when asked), the run and, with `bare`, the baseline, for `n` prospects. */
async function pipelineRuns(kind: DbKind, n: number, withDry: boolean) {
  const dir = mkdtempSync(join(state, `${kind}-${n}-`));
  const { config, pipeline, file } = writeBenchPipeline(dir, { prospects: n, seed, realLimits, realBudget });
  const clock = new ManualClock(SUNDAY_NIGHT);
  const resources = benchResources(config, clock, dir);
  let db: Awaited<ReturnType<typeof freshDatabase>> | undefined = await freshDatabase(kind);
  try {
    gc();
    const dry = withDry ? await measuredRun({ pipeline, config, db, clock, resources, dryRun: true, outDir: join(dir, 'dry') }) : undefined;
    gc();
    const run = await measuredRun({ pipeline, config, db, clock, resources });
    const stored = await footprint(db, run.result.run_id);
    await db.close();
    db = undefined;
    if (!withDry) return { run, stored, file };
    say(`   baseline: the enrich phase's work in a bare loop ...`);
    const bareDb = await freshDatabase(kind);
    try {
      gc();
      return { dry, run, stored, file, bare: await bareEnrich(bareDb, config, new ManualClock(SUNDAY_NIGHT), resources) };
    } finally {
      await bareDb.close();
    }
  } finally {
    await db?.close();
    await resources.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const results: Measured[] = [];
try {
  for (const kind of dbs) {
    say(`${kind}: ${SMALL.toLocaleString('en-US')} prospects (the memory reference) ...`);
    const small = await pipelineRuns(kind, SMALL, false);
    say(`${kind}: ${prospects.toLocaleString('en-US')} prospects, dry run then run ...`);
    const big = await pipelineRuns(kind, prospects, true);
    results.push({ kind, small: small.run, dry: big.dry!, run: big.run, stored: big.stored, bare: big.bare!, file: big.file });
  }
} finally {
  rmSync(state, { recursive: true, force: true });
}

// ------------------------------------------------------------ report
const settings = [
  `rate limits ${realLimits ? 'as shipped' : `replaced by ${RAISED_LIMITS.concurrency} in flight, no rate`}`,
  `budget ${realBudget ? 'as shipped' : `limits x${BUDGET_FACTOR * Math.ceil(prospects / 5000)}`}`,
];
const context = { prospects, reference: SMALL, settings, realLimits, shipped: shippedConfig(tmpdir(), {}) };
const out: string[] = [];
const goals: Goal[] = [];
for (const m of results) {
  const rendered = renderMeasured(m, context);
  out.push(...rendered.lines);
  goals.push(...rendered.goals);
}
out.push('', `bench took ${fmt((performance.now() - started) / 1000, 0)} s`, '');

(json ? process.stderr : process.stdout).write(`${out.join('\n')}\n`);
if (json) {
  const summary = (m: MeasuredRun) => ({
    status: m.result.status,
    wall_ms: Math.round(m.wallMs),
    steps: m.steps.map((s) => ({ id: s.id, ms: Math.round(s.ms), items: s.items ?? null, peak_rss_mb: Math.round(s.peakRssMb) })),
    peak_rss_mb: Math.round(m.peakRssMb),
    peak_heap_mb: Math.round(m.peakHeapMb),
    start_rss_mb: Math.round(m.startRssMb),
    peak_external_mb: Math.round(m.peakExternalMb),
    enrich_done_ms: m.enrichDone.filter((_, i) => i % 100 === 0).map(Math.round),
    cost: m.result.cost,
    skipped: m.result.skipped,
  });
  const result = {
    bench: 'weekly',
    node: process.version,
    options: { prospects, reference: SMALL, seed, dbs, real_limits: realLimits, real_budget: realBudget, mix: MIX },
    runs: results.map((m) => ({ db: m.kind, file: { ...m.file, csv: undefined }, small: summary(m.small), dry: summary(m.dry), run: summary(m.run), stored: m.stored, bare: m.bare })),
    goals,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
