/**
 * Engine overhead benchmark: the same job run by the engine and by a hand-written loop.
 *
 *   node --import tsx bench/engine.ts [--n 5000,50000] [--db pglite,postgres]
 *        [--repeat 1] [--diag] [--profile]
 *        [--pg-url postgres://postgres@127.0.0.1:5432/test]
 *   npm run bench:engine -- --n 5000 --db postgres
 *
 * The job: N items (rows of bench_items, seeded untimed); per item one GET to a local
 * zero-latency HTTP server (bench/server.ts, in its own process) and one row inserted into
 * bench_results; 10 items in flight.
 *
 * - engine: bench/engine-pipeline.yaml run through the engine API (loadPipeline,
 *   resolveInputs, RunStore, executeRun): one foreach group over bench_items, 10 in flight,
 *   whose steps per item are fetch (http.request) then store (sql.insert, exactly once).
 * - loop: fetch + insert per item, 10 workers, ids paged 1000 at a time (like the engine's
 *   foreach), through the same Database (db.query) as the engine.
 * - --diag adds loops that split the job, to attribute the engine's time: fetch only,
 *   insert only, and insert through the engine's exactly-once protocol (a transaction with
 *   RunStore.reserveEffect + INSERT + RunStore.completeEffect), which is what sql.insert
 *   costs inside the engine.
 * - --profile runs the engine case (first variant) under node --cpu-prof, from an esbuild
 *   bundle with a source map so frames map back to engine/*.ts lines, and prints hotspots.
 * - BENCH_SQL_TIMING=1 (environment) makes each case print, on stderr, its statements by
 *   text with count and client-side time. Every case reports statements sent per item.
 *
 * Every case runs in a fresh child process (this file with --case ...) so its wall time and
 * peak RSS (sampled every 50 ms) are its own. Engine and loop of one (db, N) share one
 * database: a fresh PGlite data dir per N (temp folder), a fresh Postgres database per bench
 * run (CREATE DATABASE flows_bench_<random>, dropped at the end). Creating and seeding the
 * database is done untimed, by a separate child, before the measured ones.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs, table } from './common.ts';
import pg from 'pg';
import { emptyConfig } from '../engine/config.ts';
import { type Database, openDatabase } from '../engine/db/connect.ts';
import { createPostgresDatabase } from '../test/helpers/db.ts';
import { RunEvents } from '../engine/events.ts';
import { executeRun } from '../engine/executor/run.ts';
import { resolveInputs } from '../engine/pipeline/inputs.ts';
import { loadPipeline } from '../engine/pipeline/load.ts';
import { RunStore } from '../engine/store/index.ts';
import { createRegistry } from '../steps/index.ts';
import { type CpuProfile, formatSummary, summarise } from './cpu-top.ts';
import { scoreOf } from './score.ts';

const SELF = fileURLToPath(import.meta.url);
const BENCH_DIR = join(dirname(SELF), ...(SELF.endsWith('.bundle.mjs') ? ['..'] : []));
const CONCURRENCY = 10;
const PAGE = 1000;
const RESULT_MARK = 'BENCH_RESULT ';
const PIPELINES: Record<string, string> = {
  group: join(BENCH_DIR, 'engine-pipeline.yaml'),
};
type DbKind = 'pglite' | 'postgres';
type LoopMode = 'full' | 'fetch' | 'insert' | 'insert-effect';
const DIAG_MODES: LoopMode[] = ['fetch', 'insert', 'insert-effect'];

// ---------------------------------------------------------------- arguments

const list = (v: string | undefined, dflt: string) =>
  (v ?? dflt)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

// ---------------------------------------------------------------- child: one case

interface CaseResult {
  case: 'engine' | 'loop';
  /** Engine: the pipeline variant; loop: the mode (full is the job). */
  variant: string;
  db: DbKind;
  n: number;
  ms: number;
  /** Peak RSS while the case ran (sampled every 50 ms), and RSS just before it started. */
  peakRssMb: number;
  baseRssMb: number;
  /** Peak V8 heap used while the case ran, and heap used after a full GC at its end (what it retains). */
  peakHeapUsedMb: number;
  heapAfterGcMb: number;
  /** Statements sent to the database while the case ran, per item. */
  statementsPerItem: number;
  /** CPU time of the case's own process (user + system) per item: what the process spends, apart from waiting. */
  cpuMsPerItem: number;
  passes?: Record<string, { ms: number; items?: number }>;
  status?: string;
  rows: number;
  /** The rows the job should have written are there, each with the server's score. */
  checked: boolean;
  engineRecords?: { items: number; effects: number };
}

/** Untimed: the source table with exactly N ids, an empty target, no engine history. */
async function prepare(db: Database, n: number): Promise<void> {
  await db.query('CREATE TABLE IF NOT EXISTS bench_items (id int PRIMARY KEY)');
  const [{ c } = { c: -1 }] = await db.query<{ c: number }>('SELECT count(*)::int AS c FROM bench_items');
  if (c !== n) {
    await db.query('TRUNCATE bench_items');
    await db.query('INSERT INTO bench_items (id) SELECT g FROM generate_series(1, $1::int) AS g', [n]);
  }
  await db.query('DROP TABLE IF EXISTS bench_results');
  await db.query('CREATE TABLE bench_results (id int PRIMARY KEY, score int NOT NULL)');
  await db.query('TRUNCATE flow_items, flow_effects, flow_steps, flow_runs');
  await db.query('ANALYZE');
}

/** ids of bench_items in key order, paged like the engine's foreach; safe for concurrent callers. */
function idSource(db: Database): () => Promise<number | undefined> {
  let buf: number[] = [];
  let i = 0;
  let after: number | undefined;
  let last = false;
  let loading: Promise<void> | undefined;
  const load = async () => {
    const rows =
      after === undefined
        ? await db.query<{ id: number }>('SELECT id FROM bench_items ORDER BY id LIMIT $1', [PAGE])
        : await db.query<{ id: number }>('SELECT id FROM bench_items WHERE id > $1 ORDER BY id LIMIT $2', [after, PAGE]);
    buf = rows.map((r) => r.id);
    i = 0;
    last = rows.length < PAGE;
    if (buf.length) after = buf.at(-1);
  };
  return async () => {
    while (i >= buf.length) {
      if (last) return undefined;
      loading ??= load().finally(() => (loading = undefined));
      await loading;
    }
    return buf[i++];
  };
}

async function runLoop(db: Database, url: string, mode: LoopMode): Promise<void> {
  const next = idSource(db);
  const store = new RunStore(db);
  const get = async (id: number) => {
    const res = await fetch(`${url}/item/${id}`, { headers: { accept: 'application/json' } });
    if (!res.ok) throw new Error(`GET /item/${id}: ${res.status}`);
    return (await res.json()) as { id: number; score: number };
  };
  const insert = (row: { id: number; score: number }) => db.query('INSERT INTO bench_results (id, score) VALUES ($1, $2)', [row.id, row.score]);
  const one: Record<LoopMode, (id: number) => Promise<unknown>> = {
    full: async (id) => insert(await get(id)),
    fetch: (id) => get(id),
    insert: (id) => insert({ id, score: scoreOf(id) }),
    // What the engine does for one sql.insert item: the write commits with its idempotency record.
    'insert-effect': async (id) => {
      const effect = { key: `bench:store:${id}`, runId: 'bench', stepId: 'store', itemKey: String(id), kind: 'db.write', summary: 'sql.insert db.write' };
      const statement = { sql: 'INSERT INTO bench_results (id, score) VALUES ($1, $2) RETURNING 1 AS one', params: [id, scoreOf(id)], output: () => ({}) };
      const r = await store.effects.write(effect, [], { statement }, new Date());
      if (r.state !== 'written') throw new Error(`effect ${effect.key} already ${r.state}`);
    },
  };
  const worker = async () => {
    for (let id = await next(); id !== undefined; id = await next()) await one[mode](id);
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

async function runEngine(db: Database, url: string, file: string): Promise<{ status: string; passes: CaseResult['passes'] }> {
  const registry = createRegistry();
  const loaded = loadPipeline(readFileSync(file, 'utf8'), file, { registry, config: emptyConfig });
  if (!loaded.pipeline) throw new Error(`invalid bench pipeline:\n${loaded.diagnostics.map((d) => JSON.stringify(d)).join('\n')}`);
  const inputs = resolveInputs(loaded.pipeline, { url });
  const events = new RunEvents();
  const started = new Map<string, number>();
  const passes: NonNullable<CaseResult['passes']> = {};
  events.on('step:start', (e) => void started.set(e.stepId, performance.now()));
  events.on('step:finish', (e) => {
    passes[e.stepId] = { ms: Math.round(performance.now() - (started.get(e.stepId) ?? performance.now())) };
  });
  const result = await executeRun({ pipeline: loaded.pipeline, config: emptyConfig, store: new RunStore(db), inputs, events });
  for (const s of result.steps) if (passes[s.id] && s.items) passes[s.id]!.items = s.items.succeeded;
  if (result.status !== 'completed') {
    process.stderr.write(`engine run ${result.run_id} ended ${result.status}: ${result.error ?? ''} ${JSON.stringify(result.failures.slice(0, 3))}\n`);
  }
  return { status: result.status, passes };
}

/**
 * Counts statements sent to the database (BEGIN and COMMIT included) by wrapping the client
 * query method of pg and of PGlite in this process; every engine and kysely query ends there.
 */
const statements = { count: 0, byText: new Map<string, { n: number; ms: number }>() };
async function countStatements(dbKind: DbKind): Promise<void> {
  let target: object | null = pg.Client.prototype;
  if (dbKind === 'pglite') {
    // Imported only here, so a Postgres case does not carry PGlite's module in its RSS.
    const { PGlite } = await import('@electric-sql/pglite');
    target = PGlite.prototype;
    while (target && !Object.prototype.hasOwnProperty.call(target, 'query')) target = Object.getPrototypeOf(target);
  }
  if (!target) throw new Error('cannot find the query method to count statements');
  const t = target as { query: (...a: unknown[]) => unknown };
  const original = t.query;
  const timing = process.env.BENCH_SQL_TIMING === '1';
  t.query = function (this: unknown, ...a: unknown[]) {
    statements.count++;
    if (!timing) return original.apply(this, a);
    const text = typeof a[0] === 'string' ? a[0] : ((a[0] as { text?: string })?.text ?? '?');
    const key = text.replace(/\s+/g, ' ').replace(/\(\$\d+(, \$\d+)*\)(, \(\$\d+(, \$\d+)*\))+/g, '(...), ...').replace(/\$\d+(, \$\d+){3,}/g, '$.., ..').slice(0, 110);
    const start = performance.now();
    const done = () => {
      const e = statements.byText.get(key) ?? { n: 0, ms: 0 };
      e.n++;
      e.ms += performance.now() - start;
      statements.byText.set(key, e);
    };
    const r = original.apply(this, a) as Promise<unknown>;
    return r && typeof r.then === 'function' ? r.finally(done) : (done(), r);
  };
}

/** With BENCH_SQL_TIMING=1: time per statement text (client side, queueing included) on stderr. */
function printSqlTiming(): void {
  if (!statements.byText.size) return;
  const rows = [...statements.byText.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 15);
  process.stderr.write(`SQL time by statement (count, total ms incl. waiting, text):\n`);
  for (const [k, v] of rows) process.stderr.write(`  ${String(v.n).padStart(7)} ${v.ms.toFixed(0).padStart(8)}  ${k}\n`);
}

function memorySampler(): { stop(): { rss: number; heapUsed: number } } {
  let rss = process.memoryUsage.rss();
  let heapUsed = process.memoryUsage().heapUsed;
  const sample = () => {
    const m = process.memoryUsage();
    if (m.rss > rss) rss = m.rss;
    if (m.heapUsed > heapUsed) heapUsed = m.heapUsed;
  };
  const timer = setInterval(sample, 50);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return { rss, heapUsed };
    },
  };
}

const mb = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;

async function childMain(args: Map<string, string>): Promise<void> {
  const kind = args.get('case') as 'engine' | 'loop' | 'prepare';
  const dbKind = args.get('db') as DbKind;
  const n = Number(args.get('n'));
  const url = args.get('url')!;
  const dsn = args.get('dsn')!;
  const variant = args.get('variant') ?? (kind === 'engine' ? 'group' : 'full');

  await countStatements(dbKind);
  const db = await openDatabase(dbKind === 'postgres' ? { url: dsn } : { dataDir: dsn });
  await prepare(db, n);
  if (kind === 'prepare') {
    // Creating the database (PGlite initdb, migrations) and seeding grow memory that a
    // measured process would otherwise carry: done once here, in a process of its own.
    await db.close();
    process.stdout.write(`${RESULT_MARK}{}\n`);
    return;
  }
  (globalThis as { gc?: () => void }).gc?.();
  const base = process.memoryUsage.rss();
  const sampler = memorySampler();
  statements.count = 0;
  statements.byText.clear();
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  let status: string | undefined;
  let passes: CaseResult['passes'];
  if (kind === 'engine') ({ status, passes } = await runEngine(db, url, args.get('pipeline') ?? PIPELINES[variant]!));
  else await runLoop(db, url, variant as LoopMode);
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const sent = statements.count;
  const peak = sampler.stop();
  printSqlTiming();
  (globalThis as { gc?: () => void }).gc?.();
  const heapAfterGc = process.memoryUsage().heapUsed;

  // Untimed: the job was really done (N rows, each with the server's score).
  const [agg] = await db.query<{ c: number; s: number }>('SELECT count(*)::int AS c, coalesce(sum(score), 0)::bigint AS s FROM bench_results');
  let expected = 0;
  for (let id = 1; id <= n; id++) expected += scoreOf(id);
  let engineRecords: CaseResult['engineRecords'];
  if (kind === 'engine') {
    const [r] = await db.query<{ items: number; effects: number }>(
      'SELECT (SELECT count(*)::int FROM flow_items) AS items, (SELECT count(*)::int FROM flow_effects) AS effects',
    );
    engineRecords = r;
  }
  await db.close();
  const writes = variant !== 'fetch';
  const result: CaseResult = {
    case: kind,
    variant,
    db: dbKind,
    n,
    ms: Math.round(ms),
    peakRssMb: mb(peak.rss),
    baseRssMb: mb(base),
    peakHeapUsedMb: mb(peak.heapUsed),
    heapAfterGcMb: mb(heapAfterGc),
    statementsPerItem: Math.round((sent / n) * 1000) / 1000,
    cpuMsPerItem: Math.round(((cpu.user + cpu.system) / 1000 / n) * 1000) / 1000,
    passes,
    status,
    rows: Number(agg?.c ?? 0),
    checked: writes ? Number(agg?.c) === n && Number(agg?.s) === expected : Number(agg?.c) === 0,
    engineRecords,
  };
  process.stdout.write(`${RESULT_MARK}${JSON.stringify(result)}\n`);
}

// ---------------------------------------------------------------- parent: orchestration

const children = new Set<ChildProcess>();

function startServer(): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(BENCH_DIR, 'server.ts'), '--exit-with-stdin'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.add(proc);
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout! });
    rl.once('line', (line) => resolve({ url: `http://127.0.0.1:${line.trim()}`, proc }));
    proc.once('exit', (code) => reject(new Error(`bench server exited (${code}) before printing its port`)));
  });
}

/** Runs this file (or, when profiling, its bundle) as one case in a child process. */
function runCase(argv: string[], profile?: { dir: string; bundle: string }): Promise<CaseResult> {
  const nodeArgs = profile ? ['--expose-gc', '--cpu-prof', '--cpu-prof-dir', profile.dir, profile.bundle] : ['--import', 'tsx', '--expose-gc', SELF];
  const proc = spawn(process.execPath, [...nodeArgs, ...argv], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(proc);
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  return new Promise((resolve, reject) => {
    proc.once('exit', (code) => {
      children.delete(proc);
      const line = out.split('\n').find((l) => l.startsWith(RESULT_MARK));
      if (code !== 0 || !line) return reject(new Error(`case ${argv.join(' ')} failed (exit ${code})\n${out}`));
      resolve(JSON.parse(line.slice(RESULT_MARK.length)) as CaseResult);
    });
  });
}

/** Bundles this file with a source map, so a CPU profile has real lines (tsx minifies each module to one line). */
async function buildProfileBundle(): Promise<string> {
  const outDir = join(BENCH_DIR, '.cache');
  mkdirSync(outDir, { recursive: true });
  const bundle = join(outDir, 'engine.bundle.mjs');
  const esbuild = (await import('esbuild' as string)) as typeof import('esbuild');
  await esbuild.build({
    entryPoints: [SELF],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: `node${process.versions.node}`,
    packages: 'external',
    sourcemap: 'external',
    logLevel: 'warning',
  });
  return bundle;
}

async function createPgDatabase(adminUrl: string): Promise<{ dsn: string; drop(): Promise<void> } | { skipped: string }> {
  try {
    const created = await createPostgresDatabase(adminUrl, 'flows_bench');
    return { dsn: created.url, drop: created.drop };
  } catch (err) {
    return { skipped: `Postgres at ${adminUrl} unreachable or refused CREATE DATABASE: ${(err as Error).message}` };
  }
}

const fmt = (v: number | undefined, digits = 0) => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits));


async function parentMain(args: Map<string, string>): Promise<void> {
  const ns = list(args.get('n'), '5000,50000')
    .map(Number)
    .sort((a, b) => a - b);
  const dbs = list(args.get('db'), 'pglite,postgres') as DbKind[];
  const variants = list(args.get('variants'), 'group');
  const primary = variants[0]!;
  const repeat = Number(args.get('repeat') ?? 1);
  const diag = args.has('diag');
  const pgUrl = args.get('pg-url') ?? process.env.FLOWS_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const profile = args.has('profile');
  for (const n of ns) if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--n takes positive integers, got ${args.get('n')}`);
  for (const d of dbs) if (d !== 'pglite' && d !== 'postgres') throw new Error(`--db takes pglite and/or postgres, got ${d}`);
  for (const v of variants) if (!PIPELINES[v]) throw new Error(`--variants takes group, got ${v}`);
  if (!Number.isSafeInteger(repeat) || repeat < 1) throw new Error(`--repeat takes a positive integer`);

  const cleanups: (() => Promise<void> | void)[] = [];
  const cleanup = async () => {
    for (const c of cleanups.splice(0).reverse()) await Promise.resolve(c()).catch((e) => process.stderr.write(`cleanup: ${(e as Error).message}\n`));
  };
  const onSignal = () => {
    for (const c of children) c.kill('SIGTERM');
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const t0 = performance.now();
  const notes: string[] = [];
  const results: CaseResult[] = [];
  const profiles: { db: DbKind; n: number; file: string; summary: string }[] = [];
  try {
    const bundle = profile ? await buildProfileBundle() : undefined;
    const server = await startServer();
    cleanups.push(() => {
      server.proc.stdin?.end();
      server.proc.kill('SIGTERM');
    });
    process.stderr.write(`bench server at ${server.url} (pid ${server.proc.pid})\n`);

    for (const dbKind of dbs) {
      let pgDsn: string | undefined;
      if (dbKind === 'postgres') {
        const created = await createPgDatabase(pgUrl);
        if ('skipped' in created) {
          notes.push(`postgres skipped: ${created.skipped}`);
          process.stderr.write(`${notes.at(-1)}\n`);
          continue;
        }
        pgDsn = created.dsn;
        cleanups.push(() => created.drop());
        process.stderr.write(`postgres database ${new URL(pgDsn).pathname.slice(1)} created (dropped at the end)\n`);
      }
      for (const n of ns) {
        let dsn = pgDsn;
        if (dbKind === 'pglite') {
          const dir = mkdtempSync(join(tmpdir(), 'flows-bench-pglite-'));
          cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
          dsn = dir;
        }
        const common = ['--db', dbKind, '--n', String(n), '--url', server.url, '--dsn', dsn!];
        const step = async (label: string, argv: string[], prof?: { dir: string; bundle: string }) => {
          const t = performance.now();
          process.stderr.write(`[${dbKind} N=${n}] ${label} ...`);
          const r = await runCase([...argv, ...common], prof);
          process.stderr.write(` ${r.ms ?? '-'} ms${r.cpuMsPerItem !== undefined ? `, ${r.cpuMsPerItem} ms CPU per item` : ''} (child ${((performance.now() - t) / 1000).toFixed(1)} s)\n`);
          return r;
        };
        await step('prepare (untimed)', ['--case', 'prepare']);
        for (let rep = 0; rep < repeat; rep++) {
          results.push(await step('loop', ['--case', 'loop', '--variant', 'full']));
          for (const variant of variants) {
            results.push(await step(`engine (${variant})`, ['--case', 'engine', '--variant', variant, '--pipeline', PIPELINES[variant]!]));
          }
        }
        if (diag) for (const mode of DIAG_MODES) results.push(await step(`diag loop (${mode})`, ['--case', 'loop', '--variant', mode]));
        if (bundle) {
          const dir = mkdtempSync(join(tmpdir(), 'flows-bench-prof-'));
          await step(`engine (${primary}) under --cpu-prof (not in the figures)`, ['--case', 'engine', '--variant', primary, '--pipeline', PIPELINES[primary]!], { dir, bundle });
          const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
          if (file) {
            const full = join(dir, file);
            profiles.push({ db: dbKind, n, file: full, summary: formatSummary(await summarise(JSON.parse(readFileSync(full, 'utf8')) as CpuProfile, 25)) });
          }
        }
      }
    }
  } finally {
    await cleanup();
  }

  // ------------------------------------------------------------ report
  /** The fastest of the repeats (least disturbed by the rest of the machine). */
  const best = (c: 'engine' | 'loop', db: DbKind, n: number, variant: string) =>
    results.filter((r) => r.case === c && r.db === db && r.n === n && r.variant === variant).sort((a, b) => a.ms - b.ms)[0];
  const figures: Record<string, unknown>[] = [];
  const rows: string[][] = [];
  for (const db of dbs) {
    for (const n of ns) {
      const loop = best('loop', db, n, 'full');
      if (!loop) continue;
      for (const variant of variants) {
        const r = best('engine', db, n, variant);
        if (!r) continue;
        const overhead = (r.ms - loop.ms) / r.n;
        const ratio = r.ms / loop.ms;
        figures.push({
          db,
          n,
          variant,
          engine_ms: r.ms,
          loop_ms: loop.ms,
          overhead_ms_per_item: Math.round(overhead * 1000) / 1000,
          ratio: Math.round(ratio * 100) / 100,
          engine_peak_rss_mb: r.peakRssMb,
          engine_base_rss_mb: r.baseRssMb,
          engine_peak_heap_mb: r.peakHeapUsedMb,
          engine_heap_after_gc_mb: r.heapAfterGcMb,
          loop_peak_rss_mb: loop.peakRssMb,
          loop_base_rss_mb: loop.baseRssMb,
          loop_peak_heap_mb: loop.peakHeapUsedMb,
          engine_statements_per_item: r.statementsPerItem,
          loop_statements_per_item: loop.statementsPerItem,
          passes: r.passes,
          engine_status: r.status,
          engine_checked: r.checked,
          loop_checked: loop.checked,
          engine_records: r.engineRecords,
          runs: repeat,
        });
        rows.push([
          db,
          `${n}`,
          variant,
          fmt(r.ms),
          fmt(loop.ms),
          fmt(overhead, 3),
          fmt(ratio, 2),
          `${fmt(r.peakRssMb)} (${fmt(r.baseRssMb)})`,
          `${fmt(loop.peakRssMb)} (${fmt(loop.baseRssMb)})`,
          Object.entries(r.passes ?? {})
            .map(([k, v]) => `${k} ${v.ms}`)
            .join(' + '),
          `${fmt(r.statementsPerItem, 2)} | ${fmt(loop.statementsPerItem, 2)}`,
          r.checked && loop.checked && r.status === 'completed' ? 'ok' : `ENGINE ${r.status} rows=${r.rows}; LOOP rows=${loop.rows}`,
        ]);
      }
    }
  }
  const out: string[] = [''];
  out.push(
    table(
      ['db', 'N', 'variant', 'engine ms', 'loop ms', 'overhead ms/item', 'engine/loop', 'engine peak RSS MB (base)', 'loop peak RSS MB (base)', 'engine passes ms', 'SQL stmts/item engine|loop', 'check'],
      rows,
      3,
    ),
  );
  if (repeat > 1) out.push(`(best of ${repeat} runs each)`);

  const diagRows: string[][] = [];
  const diagFigures: Record<string, unknown>[] = [];
  if (diag) {
    for (const db of dbs) {
      for (const n of ns) {
        const eng = best('engine', db, n, primary);
        const loop = best('loop', db, n, 'full');
        const d = Object.fromEntries(DIAG_MODES.map((m) => [m, best('loop', db, n, m)]));
        if (!eng || !loop || !d.fetch) continue;
        const pass = (id: string) => eng.passes?.[id]?.ms;
        const per = (ms: number | undefined) => (ms === undefined ? '-' : (ms / n).toFixed(3));
        diagFigures.push({
          db,
          n,
          loop_full_ms: loop.ms,
          loop_fetch_ms: d.fetch.ms,
          loop_insert_ms: d.insert?.ms,
          loop_insert_effect_ms: d['insert-effect']?.ms,
          loop_insert_effect_statements_per_item: d['insert-effect']?.statementsPerItem,
          engine_fetch_pass_ms: pass('fetch'),
          engine_store_pass_ms: pass('store'),
        });
        diagRows.push([
          db,
          `${n}`,
          `${per(loop.ms)}`,
          `${per(d.fetch.ms)}`,
          `${per(d.insert?.ms)}`,
          `${per(d['insert-effect']?.ms)}`,
          `${per(pass('fetch'))}`,
          `${per(pass('store'))}`,
        ]);
      }
    }
    out.push('', `diagnostics, ms per item (engine = variant ${primary}):`);
    out.push(
      table(
        ['db', 'N', 'loop fetch+insert', 'loop fetch only', 'loop insert only', 'loop exactly-once insert', 'engine fetch pass', 'engine store pass'],
        diagRows,
        2,
      ),
    );
  }
  for (const note of notes) out.push(`note: ${note}`);

  // Goal checks, on the primary variant.
  const goals: { goal: string; pass: boolean; detail: string }[] = [];
  const lo = ns[0]!;
  const hi = ns.at(-1)!;
  for (const db of dbs) {
    const pairs = ns.map((n) => ({ n, e: best('engine', db, n, primary), l: best('loop', db, n, 'full') })).filter((p) => p.e && p.l);
    if (!pairs.length) continue;
    const ratio = db === 'postgres' ? 1.3 : 1.2;
    goals.push({
      goal: `${db}: engine/loop <= ${ratio} (every N)`,
      pass: pairs.every((p) => p.e!.ms / p.l!.ms <= ratio),
      detail: pairs.map((p) => `N=${p.n}: ${(p.e!.ms / p.l!.ms).toFixed(2)}`).join(', '),
    });
    // Each item is one durable effect (the insert and its key) plus its share of the batched
    // item records and the run's own records: at most one statement for the effect, two in all.
    goals.push({
      goal: `${db}: statements per item <= 2, the effect's write and key in one`,
      pass: pairs.every((p) => p.e!.statementsPerItem <= 2),
      detail: pairs.map((p) => `N=${p.n}: ${p.e!.statementsPerItem}`).join(', '),
    });
    const a = best('engine', db, lo, primary);
    const b = best('engine', db, hi, primary);
    if (a && b && hi > lo) {
      const limit = 1.1 * (hi / lo);
      goals.push({
        goal: `${db}: engine time at N=${hi} <= ${limit.toFixed(1)}x time at N=${lo}`,
        pass: b.ms <= limit * a.ms,
        detail: `${b.ms} ms / ${a.ms} ms = ${(b.ms / a.ms).toFixed(2)}x`,
      });
      goals.push({
        goal: `${db}: engine peak RSS at N=${hi} <= 1.3x peak RSS at N=${lo}`,
        pass: b.peakRssMb <= 1.3 * a.peakRssMb,
        detail: `${b.peakRssMb} MB / ${a.peakRssMb} MB = ${(b.peakRssMb / a.peakRssMb).toFixed(2)}x`,
      });
    }
  }
  out.push('', `goal checks (engine variant ${primary}):`);
  for (const g of goals) out.push(`${g.pass ? 'PASS' : 'FAIL'}  ${g.goal}  [${g.detail}]`);
  if (!goals.length) out.push('(nothing measured, no goal checked)');
  for (const p of profiles) out.push('', `CPU profile of the engine (${primary}) on ${p.db}, N=${p.n}: ${p.file}`, p.summary);
  out.push('', `bench took ${((performance.now() - t0) / 1000).toFixed(0)} s`, '');
  out.push(
    JSON.stringify({
      bench: 'engine',
      concurrency: CONCURRENCY,
      node: process.version,
      variants,
      figures,
      diagnostics: diagFigures,
      goals,
      notes,
      profiles: profiles.map((p) => ({ db: p.db, n: p.n, file: p.file })),
    }),
  );
  process.stdout.write(`${out.join('\n')}\n`);
  if (results.some((r) => !r.checked || (r.case === 'engine' && r.status !== 'completed'))) process.exitCode = 1;
}

const args = parseArgs(process.argv.slice(2));
if (args.has('case')) await childMain(args);
else await parentMain(args);
