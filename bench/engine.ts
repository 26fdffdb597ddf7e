/**
 * Engine overhead benchmark: the same job run by the engine and by a hand-written loop.
 *
 *   node --import tsx bench/engine.ts [--n 5000,50000] [--db pglite,postgres]
 *        [--variants chain,expr] [--pg-url postgres://postgres@127.0.0.1:5432/test]
 *        [--profile] [--keep]
 *   npm run bench:engine -- --n 5000
 *
 * The job: N items (rows of bench_items, seeded untimed); per item one GET to a local
 * zero-latency HTTP server (bench/server.ts, its own process) and one row inserted into
 * bench_results; 10 items in flight.
 *
 * - engine: bench/engine-pipeline.yaml run through the engine API (loadPipeline,
 *   resolveInputs, RunStore, executeRun). A foreach runs one step type per item, so the job
 *   is two foreach passes: fetch (http.request), then store (sql.insert). Variant "chain"
 *   (default) feeds the insert from the fetched responses via the run's item records;
 *   variant "expr" (bench/engine-pipeline-expr.yaml) recomputes the row with an expression.
 * - loop: fetch + insert per item, 10 workers, ids paged 1000 at a time, through the same
 *   Database (db.query) as the engine.
 *
 * Every case runs in a fresh child process (this file with --case ...) so its wall time and
 * peak RSS (sampled every 50 ms) are its own; engine and loop of one (db, N) share one
 * database: a fresh PGlite data dir per N, a fresh Postgres database per bench run.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { emptyConfig } from '../engine/config.ts';
import { type Database, openDatabase } from '../engine/db/connect.ts';
import { RunEvents } from '../engine/events.ts';
import { executeRun } from '../engine/executor/run.ts';
import { resolveInputs } from '../engine/pipeline/inputs.ts';
import { loadPipeline } from '../engine/pipeline/load.ts';
import { RunStore } from '../engine/store.ts';
import { createRegistry } from '../steps/index.ts';
import { formatSummary, summarise } from './cpu-top.ts';
import { scoreOf } from './server.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const CONCURRENCY = 10;
const PAGE = 1000;
const RESULT_MARK = 'BENCH_RESULT ';
const PIPELINES: Record<string, string> = {
  chain: join(HERE, 'engine-pipeline.yaml'),
  expr: join(HERE, 'engine-pipeline-expr.yaml'),
};
type DbKind = 'pglite' | 'postgres';

// ---------------------------------------------------------------- arguments

function parseArgs(argv: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) continue;
    const eq = a.indexOf('=');
    if (eq > 0) out.set(a.slice(2, eq), a.slice(eq + 1));
    else if (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--')) out.set(a.slice(2), argv[++i]!);
    else out.set(a.slice(2), 'true');
  }
  return out;
}

const list = (v: string | undefined, dflt: string) => (v ?? dflt).split(',').map((s) => s.trim()).filter(Boolean);

// ---------------------------------------------------------------- child: one case

interface CaseResult {
  case: 'engine' | 'loop';
  variant?: string;
  db: DbKind;
  n: number;
  ms: number;
  /** Peak RSS while the case ran (sampled every 50 ms), and RSS just before it started. */
  peakRssMb: number;
  baseRssMb: number;
  heapUsedEndMb: number;
  passes?: Record<string, { ms: number; items?: number }>;
  status?: string;
  rows: number;
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

async function runLoop(db: Database, url: string): Promise<void> {
  const next = idSource(db);
  const worker = async () => {
    for (let id = await next(); id !== undefined; id = await next()) {
      const res = await fetch(`${url}/item/${id}`, { headers: { accept: 'application/json' } });
      if (!res.ok) throw new Error(`GET /item/${id}: ${res.status}`);
      const body = (await res.json()) as { id: number; score: number };
      await db.query('INSERT INTO bench_results (id, score) VALUES ($1, $2)', [body.id, body.score]);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

async function runEngine(db: Database, url: string, variant: string): Promise<{ status: string; passes: CaseResult['passes'] }> {
  const file = PIPELINES[variant];
  if (!file) throw new Error(`unknown variant "${variant}" (chain or expr)`);
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

function rssSampler(): { stop(): number } {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => {
    const r = process.memoryUsage.rss();
    if (r > peak) peak = r;
  }, 50);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, process.memoryUsage.rss());
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
  const variant = args.get('variant') ?? 'chain';

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
  const sampler = rssSampler();
  const t0 = performance.now();
  let status: string | undefined;
  let passes: CaseResult['passes'];
  if (kind === 'engine') ({ status, passes } = await runEngine(db, url, variant));
  else await runLoop(db, url);
  const ms = performance.now() - t0;
  const peak = sampler.stop();
  const heapUsed = process.memoryUsage().heapUsed;

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
  const result: CaseResult = {
    case: kind,
    variant: kind === 'engine' ? variant : undefined,
    db: dbKind,
    n,
    ms: Math.round(ms),
    peakRssMb: mb(peak),
    baseRssMb: mb(base),
    heapUsedEndMb: mb(heapUsed),
    passes,
    status,
    rows: Number(agg?.c ?? 0),
    checked: Number(agg?.c) === n && Number(agg?.s) === expected,
    engineRecords,
  };
  process.stdout.write(`${RESULT_MARK}${JSON.stringify(result)}\n`);
}

// ---------------------------------------------------------------- parent: orchestration

const children = new Set<ChildProcess>();

function startServer(): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(HERE, 'server.ts'), '--exit-with-stdin'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.add(proc);
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout! });
    rl.once('line', (line) => resolve({ url: `http://127.0.0.1:${line.trim()}`, proc }));
    proc.once('exit', (code) => reject(new Error(`bench server exited (${code}) before printing its port`)));
  });
}

function runCase(argv: string[], profileDir?: string): Promise<CaseResult> {
  // Also used for --case prepare, whose result is {}.
  const nodeArgs = ['--import', 'tsx', '--expose-gc'];
  if (profileDir) nodeArgs.push('--cpu-prof', '--cpu-prof-dir', profileDir);
  const proc = spawn(process.execPath, [...nodeArgs, SELF, ...argv], { stdio: ['ignore', 'pipe', 'inherit'] });
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

async function createPgDatabase(adminUrl: string): Promise<{ dsn: string; drop(): Promise<void> } | { skipped: string }> {
  const name = `flows_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 3000 });
  try {
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
  } catch (err) {
    await admin.end().catch(() => {});
    return { skipped: `Postgres at ${adminUrl} unreachable or refused CREATE DATABASE: ${(err as Error).message}` };
  }
  await admin.end();
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return {
    dsn: u.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 3000 });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

const fmt = (v: number | undefined, digits = 0) => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits));

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

async function parentMain(args: Map<string, string>): Promise<void> {
  const ns = list(args.get('n'), '5000,50000').map(Number).sort((a, b) => a - b);
  const dbs = list(args.get('db'), 'pglite,postgres') as DbKind[];
  const variants = list(args.get('variants'), 'chain');
  const primary = variants[0]!;
  const pgUrl = args.get('pg-url') ?? process.env.FLOWS_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const profile = args.has('profile');
  for (const n of ns) if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--n takes positive integers, got ${args.get('n')}`);
  for (const d of dbs) if (d !== 'pglite' && d !== 'postgres') throw new Error(`--db takes pglite and/or postgres, got ${d}`);
  for (const v of variants) if (!PIPELINES[v]) throw new Error(`--variants takes chain and/or expr, got ${v}`);

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

  const notes: string[] = [];
  const results: CaseResult[] = [];
  const profiles: { db: DbKind; n: number; file: string; summary: string }[] = [];
  try {
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
        process.stderr.write(`[${dbKind} N=${n}] prepare (untimed) ...\n`);
        await runCase(['--case', 'prepare', ...common]);
        process.stderr.write(`[${dbKind} N=${n}] loop ...\n`);
        results.push(await runCase(['--case', 'loop', ...common]));
        for (const variant of variants) {
          const profileDir = profile && variant === primary ? mkdtempSync(join(tmpdir(), 'flows-bench-prof-')) : undefined;
          process.stderr.write(`[${dbKind} N=${n}] engine (${variant}) ...${profileDir ? ` profiling into ${profileDir}` : ''}\n`);
          results.push(await runCase(['--case', 'engine', '--variant', variant, ...common], profileDir));
          if (profileDir) {
            const file = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile'));
            if (file) {
              const full = join(profileDir, file);
              profiles.push({ db: dbKind, n, file: full, summary: formatSummary(summarise(JSON.parse(readFileSync(full, 'utf8')), 20)) });
            }
          }
        }
      }
    }
  } finally {
    await cleanup();
  }

  // ------------------------------------------------------------ report
  const find = (c: 'engine' | 'loop', db: DbKind, n: number, variant?: string) =>
    results.find((r) => r.case === c && r.db === db && r.n === n && (c === 'loop' || r.variant === variant));
  const figures: Record<string, unknown>[] = [];
  const rows: string[][] = [];
  for (const r of results.filter((x) => x.case === 'engine')) {
    const loop = find('loop', r.db, r.n)!;
    const overhead = (r.ms - loop.ms) / r.n;
    const ratio = r.ms / loop.ms;
    figures.push({
      db: r.db,
      n: r.n,
      variant: r.variant,
      engine_ms: r.ms,
      loop_ms: loop.ms,
      overhead_ms_per_item: Math.round(overhead * 1000) / 1000,
      ratio: Math.round(ratio * 100) / 100,
      engine_peak_rss_mb: r.peakRssMb,
      engine_base_rss_mb: r.baseRssMb,
      loop_peak_rss_mb: loop.peakRssMb,
      loop_base_rss_mb: loop.baseRssMb,
      passes: r.passes,
      engine_status: r.status,
      engine_checked: r.checked,
      loop_checked: loop.checked,
      engine_records: r.engineRecords,
    });
    rows.push([
      r.db,
      `${r.n}`,
      r.variant ?? '',
      fmt(r.ms),
      fmt(loop.ms),
      fmt(overhead, 3),
      fmt(ratio, 2),
      `${fmt(r.peakRssMb)} (${fmt(r.baseRssMb)})`,
      `${fmt(loop.peakRssMb)} (${fmt(loop.baseRssMb)})`,
      Object.entries(r.passes ?? {})
        .map(([k, v]) => `${k} ${v.ms}`)
        .join(' / '),
      r.checked && loop.checked && r.status === 'completed' ? 'ok' : `ENGINE ${r.status} rows=${r.rows}; LOOP rows=${loop.rows}`,
    ]);
  }
  const out: string[] = [];
  out.push('');
  out.push(
    table(
      ['db', 'N', 'variant', 'engine ms', 'loop ms', 'overhead ms/item', 'ratio', 'engine peak RSS MB (base)', 'loop peak RSS MB (base)', 'engine passes ms', 'check'],
      rows,
    ),
  );
  for (const note of notes) out.push(`note: ${note}`);

  // Goal checks, on the primary variant.
  const goals: { goal: string; pass: boolean; detail: string }[] = [];
  const lo = ns[0]!;
  const hi = ns.at(-1)!;
  for (const db of dbs) {
    const eng = ns.map((n) => find('engine', db, n, primary)).filter((r): r is CaseResult => !!r);
    if (!eng.length) continue;
    const worst = Math.max(...eng.map((r) => r.ms / find('loop', db, r.n)!.ms));
    goals.push({
      goal: `${db}: engine/loop ratio <= 1.5 (every N)`,
      pass: worst <= 1.5,
      detail: eng.map((r) => `N=${r.n}: ${(r.ms / find('loop', db, r.n)!.ms).toFixed(2)}`).join(', '),
    });
    const a = find('engine', db, lo, primary);
    const b = find('engine', db, hi, primary);
    if (a && b && hi > lo) {
      const limit = 1.1 * (hi / lo);
      goals.push({ goal: `${db}: time at ${hi} <= ${limit.toFixed(1)}x time at ${lo}`, pass: b.ms <= limit * a.ms, detail: `${b.ms} ms / ${a.ms} ms = ${(b.ms / a.ms).toFixed(2)}x` });
      goals.push({
        goal: `${db}: peak RSS at ${hi} <= 1.3x peak RSS at ${lo}`,
        pass: b.peakRssMb <= 1.3 * a.peakRssMb,
        detail: `${b.peakRssMb} MB / ${a.peakRssMb} MB = ${(b.peakRssMb / a.peakRssMb).toFixed(2)}x`,
      });
    }
  }
  out.push('');
  out.push(`goal checks (variant ${primary}):`);
  for (const g of goals) out.push(`${g.pass ? 'PASS' : 'FAIL'}  ${g.goal}  [${g.detail}]`);
  for (const p of profiles) out.push('', `CPU profile of engine (${primary}) on ${p.db}, N=${p.n}: ${p.file}`, p.summary);
  out.push('');
  out.push(
    JSON.stringify({
      bench: 'engine',
      concurrency: CONCURRENCY,
      node: process.version,
      variants,
      figures,
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
