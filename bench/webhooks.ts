/**
 * Webhook latency under load: a load generator on loopback sends signed Stripe events to the
 * daemon's webhook route at a fixed rate while 4 long runs execute, and the bench checks that
 * every accepted event started exactly one run.
 *
 *   node --import tsx bench/webhooks.ts [--db pglite|postgres|pglite,postgres] [--rate 200]
 *        [--seconds 30] [--warmup 100] [--workers 8] [--busy 4] [--busy-delay 20]
 *        [--replay 50] [--drain-timeout 120] [--diag] [--sql-timing] [--profile]
 *        [--pool N] [--pglite-memory]
 *        [--pg-url postgres://postgres@127.0.0.1:5432/test]
 *
 * Processes (each case is this file with --case ...; none shares an event loop with another):
 *
 * - upstream: a small HTTP server answering GET /item/<id> after --busy-delay ms.
 * - daemon: a Daemon (engine/daemon/daemon.ts) on the chosen database with the pipelines of
 *   bench/webhooks-pipelines/: `paid` (webhook /hooks/stripe, verify stripe, one sql.insert)
 *   and `busy` (manual; a foreach of GET upstream + sql.insert, 2 items in flight, long
 *   enough to outlast the load). config daemon: { workers: --workers, poll: 500ms }, port 0.
 *   The parent drives it over IPC: queue the busy runs, open and close the measuring window,
 *   count running runs, wait for the runs to drain, check the database, stop.
 * - bare: the baseline, a fastify server with the daemon's body handling (every body a raw
 *   buffer, same limit) whose POST /hooks/stripe answers 200 at once.
 * - load: the generator. Open loop: request i is due at start + i/rate and is sent then,
 *   whatever the earlier ones are doing (node:http, keep-alive agent). Each is a distinct
 *   checkout.session.completed event (id evt_<tag>_<i>) signed with
 *   Stripe.webhooks.generateTestHeaderString when it is sent. The first --warmup requests
 *   (at the same rate) are not in the latency figures; their events are checked like the rest.
 *
 * Latency is measured from a request's planned send time to the end of its response body
 * (so a generator that falls behind, or a server that holds the connection, counts against
 * the figure: no coordinated omission); "service" latency from the actual send is printed
 * beside it. Lost = no response within 10 s, a network error, or a status other than 200.
 * Accepted = 200 with status "started".
 *
 * Per database: the bare baseline, then the daemon, one after the other in the same run (the
 * machine is noisy: compare the ratios, not absolute times). After the load the bench waits
 * until the daemon is quiet (requests the generator gave up on can still be in the kernel's
 * queues and be processed late), then (bounded by --drain-timeout) for every run of `paid` to
 * end, then checks: webhook_events rows == accepted, runs of `paid` == accepted, each
 * accepted event id is the trigger_ref of exactly one run and each webhook_events row points
 * at that run, each completed run wrote its row in bench_paid; then replays --replay accepted
 * events (re-signed, as Stripe does on a retry) and checks each answers 200 "duplicate" and
 * no run or event row is added.
 *
 * In the daemon process it also measures, over the load window: event-loop delay
 * (perf_hooks.monitorEventLoopDelay, 5 ms resolution), the process's CPU time (and per
 * request), V8 heap after a full GC at both ends, the time from request to response on the
 * server, the time in WebhookRoute.handle, and how many busy runs were running (counted in
 * flow_runs in the middle of the load and every second).
 * --diag splits the handler's time (verify+parse / waiting for a connection + BEGIN /
 * statements / COMMIT). --sql-timing times every statement by text (client side, waiting
 * inside PGlite included) and, on PGlite, the share of time it was running statements.
 * --profile samples the daemon's CPU over the window (node:inspector) and prints the top
 * areas and functions (bench/cpu-top.ts). --pool sets the daemon's Postgres pool size
 * (default 10); --pglite-memory puts PGlite in memory instead of a temp data dir.
 *
 * Prints tables and a last line `BENCH_RESULT {...}` with every figure and the goals:
 * p99 <= 20 ms, 0 lost, runs == accepted, every run completed, no duplicates, the busy runs
 * running during the load. Exits 1 when a goal is missed.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs, table } from './common.ts';
import Stripe from 'stripe';

const SELF = fileURLToPath(import.meta.url);
const BENCH_DIR = dirname(SELF);
const PIPELINE_DIR = join(BENCH_DIR, 'webhooks-pipelines');
const RESULT_MARK = 'BENCH_RESULT ';
const READY_MARK = 'READY ';
const SECRET = 'whsec_bench';
const ROUTE = '/hooks/stripe';
const REQUEST_TIMEOUT_MS = 10_000;
const BODY_LIMIT = 1024 * 1024;
const GOAL_P99_MS = 20;
type DbKind = 'pglite' | 'postgres';

// ---------------------------------------------------------------- helpers

function num(args: Map<string, string>, name: string, dflt: number, min = 0): number {
  const v = args.has(name) ? Number(args.get(name)) : dflt;
  if (!Number.isFinite(v) || v < min) throw new Error(`--${name} takes a number >= ${min}, got ${args.get(name)}`);
  return v;
}

export interface Dist {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentiles, in ms rounded to 0.01. */
function dist(values: number[]): Dist {
  const s = Float64Array.from(values).sort();
  const at = (q: number) => (s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]! : NaN);
  const r = (v: number) => Math.round(v * 100) / 100;
  let sum = 0;
  for (const v of s) sum += v;
  return { n: s.length, p50: r(at(0.5)), p90: r(at(0.9)), p99: r(at(0.99)), max: r(s.length ? s[s.length - 1]! : NaN), mean: r(s.length ? sum / s.length : NaN) };
}

const eventId = (tag: string, i: number) => `evt_${tag}_${i}`;

function checkoutEvent(id: string): string {
  return JSON.stringify({
    id,
    object: 'event',
    type: 'checkout.session.completed',
    created: Math.floor(Date.now() / 1000),
    data: { object: { id: `cs_${id}`, object: 'checkout.session', customer_email: `${id}@example.com`, payment_status: 'paid' } },
  });
}

function signed(body: string): Record<string, string> {
  const header = Stripe.webhooks.generateTestHeaderString({ payload: body, secret: SECRET, timestamp: Math.floor(Date.now() / 1000) });
  return { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'stripe-signature': header };
}

/** Exit when the parent goes away (its end of our stdin pipe closes). */
function exitWithParent(stop: () => void): void {
  process.stdin.on('end', stop).resume();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

// ---------------------------------------------------------------- child: upstream server

async function upstreamMain(args: Map<string, string>): Promise<void> {
  const delay = num(args, 'delay', 20);
  const server = http.createServer((req, res) => {
    const m = /^\/item\/(\d+)$/.exec(req.url ?? '');
    if (!m) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
      return;
    }
    const id = Number(m[1]);
    const body = JSON.stringify({ id, score: (id * 7919) % 1000 });
    setTimeout(() => res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body), delay);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  process.stdout.write(`${READY_MARK}http://127.0.0.1:${(server.address() as AddressInfo).port}\n`);
  exitWithParent(() => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}

// ---------------------------------------------------------------- child: bare baseline

async function bareMain(): Promise<void> {
  const { default: Fastify } = await import('fastify');
  // The daemon's HTTP set-up (engine/daemon/daemon.ts buildHttp) without the webhook work.
  const app = Fastify({ logger: false, bodyLimit: BODY_LIMIT, return503OnClosing: true });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: BODY_LIMIT }, (_req, body, done) => done(null, body));
  app.post(ROUTE, async (req, reply) => reply.code(200).send({ status: 'started', run_id: null, bytes: Buffer.isBuffer(req.body) ? req.body.length : 0 }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address() as AddressInfo;
  process.stdout.write(`${READY_MARK}http://127.0.0.1:${address.port}\n`);
  exitWithParent(() => void app.close().finally(() => process.exit(0)));
}

// ---------------------------------------------------------------- child: load generator

interface LoadResult {
  url: string;
  rate: number;
  seconds: number;
  warmup: number;
  sent: number;
  /** Measured requests (warm-up excluded). */
  measured: number;
  /** Latency from the planned send time to the end of the response, ms (measured requests). */
  latency: Dist;
  /** Latency from the actual send, ms. */
  service: Dist;
  /** How late the generator sent requests (actual - planned), ms. */
  sendLag: Dist;
  /** p99 and max latency of each second of the measured window. */
  perSecond: { p99: number; max: number }[];
  lost: number;
  lostWarmup: number;
  lostSamples: string[];
  statuses: Record<string, number>;
  accepted: number;
  /** Indexes of every accepted request (warm-up included): their events must have a run. */
  acceptedIdx: number[];
  /** 200 answers that were not "started" (duplicate, ignored): should be none. */
  notStarted: number;
  elapsedMs: number;
  achievedRate: number;
  /** Requests that had to open a new connection (no idle keep-alive socket). */
  newConnections: number;
  generatorLoopDelay: Dist;
}

async function loadMain(args: Map<string, string>): Promise<void> {
  const url = args.get('url')!;
  const tag = args.get('tag')!;
  const rate = num(args, 'rate', 200, 0.001);
  const seconds = num(args, 'seconds', 30, 0.001);
  const warmup = Math.round(num(args, 'warmup', 100));
  const target = new URL(ROUTE, url);
  const agent = new http.Agent({ keepAlive: true, keepAliveMsecs: 10_000, maxSockets: 1024 });
  const measuredCount = Math.round(rate * seconds);
  const total = warmup + measuredCount;
  const interval = 1000 / rate;

  const planned = new Float64Array(total);
  const sentAt = new Float64Array(total);
  const doneAt = new Float64Array(total).fill(NaN);
  const outcome: string[] = new Array(total);
  const lostSamples: string[] = [];
  let newConnections = 0;

  const eld = monitorEventLoopDelay({ resolution: 5 });
  eld.enable();

  // Warm the connection pool a little (one request that is not an event).
  await new Promise<void>((resolve) => {
    const req = http.request(target, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => res.resume().on('end', resolve));
    req.on('error', () => resolve());
    req.end('{}');
  });

  const start = performance.now() + 50;
  let next = 0;
  let outstanding = 0;
  await new Promise<void>((resolve) => {
    const deadlines: (NodeJS.Timeout | undefined)[] = new Array(total);
    const finish = (i: number, what: string) => {
      if (outcome[i] !== undefined) return;
      clearTimeout(deadlines[i]);
      outcome[i] = what;
      doneAt[i] = performance.now();
      if (what !== 'started' && !/^200 /.test(what) && lostSamples.length < 20) lostSamples.push(`#${i}: ${what}`);
      outstanding--;
      if (next >= total && outstanding === 0) resolve();
    };
    const fire = (i: number) => {
      outstanding++;
      planned[i] = start + i * interval;
      const body = checkoutEvent(eventId(tag, i));
      const headers = signed(body);
      sentAt[i] = performance.now();
      const req = http.request(target, { method: 'POST', agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          if (res.statusCode !== 200) return finish(i, `HTTP ${res.statusCode} ${Buffer.concat(chunks).toString('utf8').slice(0, 120)}`);
          let status = '?';
          try {
            status = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { status?: string }).status ?? '?';
          } catch {
            status = 'unparseable';
          }
          finish(i, status === 'started' ? 'started' : `200 ${status}`);
        });
        res.on('error', (err) => finish(i, `response error ${err.message}`));
      });
      req.once('socket', () => {
        if (!req.reusedSocket) newConnections++;
      });
      // A deadline from the send, connecting included (req.setTimeout starts once connected,
      // and a connection the server is too busy to accept can wait for minutes).
      deadlines[i] = setTimeout(() => req.destroy(new Error(`no response in ${REQUEST_TIMEOUT_MS} ms`)), REQUEST_TIMEOUT_MS);
      req.on('error', (err) => finish(i, `error ${err.message}`));
      req.end(body);
    };
    const tick = () => {
      const now = performance.now();
      while (next < total && start + next * interval <= now) fire(next++);
      if (next < total) setTimeout(tick, Math.max(0, start + next * interval - performance.now()));
      else if (outstanding === 0) resolve();
    };
    setTimeout(tick, Math.max(0, start - performance.now()));
  });
  eld.disable();
  agent.destroy();

  const latency: number[] = [];
  const service: number[] = [];
  const lag: number[] = [];
  const perSecondRaw: number[][] = [];
  const statuses: Record<string, number> = {};
  const acceptedIdx: number[] = [];
  let lost = 0;
  let lostWarmup = 0;
  let notStarted = 0;
  for (let i = 0; i < total; i++) {
    const o = outcome[i]!;
    const key = o === 'started' ? '200 started' : o.startsWith('HTTP ') ? o.slice(0, 8) : o.startsWith('200 ') ? o : 'network error/timeout';
    statuses[key] = (statuses[key] ?? 0) + 1;
    const ok = o === 'started' || o.startsWith('200 ');
    if (o === 'started') acceptedIdx.push(i);
    else if (ok) notStarted++;
    if (!ok) {
      if (i < warmup) lostWarmup++;
      else lost++;
    }
    if (i < warmup) continue;
    lag.push(sentAt[i]! - planned[i]!);
    if (!ok) continue;
    const l = doneAt[i]! - planned[i]!;
    latency.push(l);
    service.push(doneAt[i]! - sentAt[i]!);
    const sec = Math.floor((planned[i]! - (start + warmup * interval)) / 1000);
    (perSecondRaw[sec] ??= []).push(l);
  }
  const elapsedMs = Math.max(...Array.from(doneAt).filter(Number.isFinite)) - start;
  const result: LoadResult = {
    url,
    rate,
    seconds,
    warmup,
    sent: total,
    measured: measuredCount,
    latency: dist(latency),
    service: dist(service),
    sendLag: dist(lag),
    perSecond: Array.from(perSecondRaw, (v) => {
      const d = dist(v ?? []);
      return { p99: d.p99, max: d.max };
    }),
    lost,
    lostWarmup,
    lostSamples,
    statuses,
    accepted: acceptedIdx.length,
    acceptedIdx,
    notStarted,
    elapsedMs: Math.round(elapsedMs),
    achievedRate: Math.round(((total - 1) / (planned[total - 1]! - planned[0]!)) * 1000 * 10) / 10,
    generatorLoopDelay: histDist(eld),
    newConnections,
  };
  process.stdout.write(`${RESULT_MARK}${JSON.stringify(result)}\n`);
}

function histDist(h: import('node:perf_hooks').IntervalHistogram): Dist {
  const ms = (ns: number) => Math.round((ns / 1e6) * 100) / 100;
  return { n: h.count, p50: ms(h.percentile(50)), p90: ms(h.percentile(90)), p99: ms(h.percentile(99)), max: ms(h.max), mean: ms(h.mean) };
}

// ---------------------------------------------------------------- child: the daemon

interface WindowStats {
  windowMs: number;
  loopDelay: Dist;
  /** Request received (headers parsed) to response finished, in the daemon process. */
  server: Dist;
  /** WebhookRoute.handle, in the daemon process. */
  handler: Dist;
  /** --diag: the handler's parts. */
  handlerParts?: { before: Dist; acquire: Dist; statements: Dist; commit: Dist };
  busyRunning: { samples: number[]; min: number; max: number };
  inFlight: { min: number; max: number };
  busyItemsPerSecond: number;
  paidCompletedInWindow: number;
  /** CPU time of the daemon process over the window (user + system), ms, and as a share of the wall time. */
  cpuMs: number;
  cpuShare: number;
  /** Daemon CPU ms per request answered in the window (the runs' work included). */
  cpuMsPerRequest: number;
  requests: number;
  /** V8 heap used after a full GC at the start and at the end of the window, MB (growth = what the load left behind). */
  heapMb: { start: number; end: number };
  rssMb: number;
  /** --profile: where the daemon's CPU went during the window. */
  profile?: string;
  /** --sql-timing: statements in the window. */
  sql?: { statements: number; perSecond: number; busyShare: number; top: { text: string; n: number; totalMs: number; meanMs: number }[] };
}

interface VerifyResult {
  webhookEvents: number;
  eventsWithRun: number;
  eventsMatchingRun: number;
  paidRuns: number;
  paidByStatus: Record<string, number>;
  distinctRefs: number;
  duplicateRefs: number;
  duplicateSamples: string[];
  acceptedWithoutRun: number;
  runsNotAccepted: number;
  /** Rows in bench_paid (one per completed run), and those of accepted events. */
  paidRows: number;
  paidRowsAccepted: number;
  /** Run created (webhook answered) to run finished, ms. */
  runLatency: Dist;
  busyRuns: Record<string, number>;
}

type Command =
  | { cmd: 'busy'; count: number; url: string; n: number }
  | { cmd: 'window-start' }
  | { cmd: 'count' }
  | { cmd: 'window-end' }
  | { cmd: 'drain'; expected: number; timeoutMs: number }
  | { cmd: 'verify'; ids: string[] }
  | { cmd: 'stop' };

async function daemonMain(args: Map<string, string>): Promise<void> {
  const dbKind = args.get('db') as DbKind;
  const dsn = args.get('dsn')!;
  const workers = num(args, 'workers', 8, 1);
  const diag = args.get('diag') === 'true';
  const sqlTiming = args.get('sql-timing') === 'true';
  const profile = args.get('profile') === 'true';
  const poolSize = args.has('pool') ? num(args, 'pool', 10, 1) : undefined;

  const [{ openDatabase }, { Daemon }, { WebhookRoute }, { loadPipeline }, { createRegistry }, { TransactionBuilder }] = await Promise.all([
    import('../engine/db/connect.ts'),
    import('../engine/daemon/daemon.ts'),
    import('../engine/daemon/webhooks.ts'),
    import('../engine/pipeline/load.ts'),
    import('../steps/index.ts'),
    import('kysely'),
  ]);
  type EngineConfig = import('../engine/config.ts').EngineConfig;

  const sql = sqlTiming ? await timeStatements(dbKind) : undefined;
  const db = await openDatabase(dbKind === 'postgres' ? { url: dsn, poolSize } : { dataDir: dsn });
  await db.query('CREATE TABLE IF NOT EXISTS bench_paid (event_id text PRIMARY KEY, session text NOT NULL)');
  await db.query('CREATE TABLE IF NOT EXISTS bench_busy (run_id text NOT NULL, item int NOT NULL, score int NOT NULL, PRIMARY KEY (run_id, item))');

  const config: EngineConfig = {
    webhooks: { body_limit: BODY_LIMIT, verifiers: { stripe: { type: 'stripe', secret: SECRET } } },
    daemon: { workers, poll: '500ms', lease: '60s', stop_timeout: '10s' },
  };
  const registry = createRegistry();
  const pipelines = ['paid.yaml', 'busy.yaml'].map((f) => {
    const file = join(PIPELINE_DIR, f);
    const loaded = loadPipeline(readFileSync(file, 'utf8'), file, { registry, config });
    if (!loaded.pipeline) throw new Error(`invalid bench pipeline ${file}:\n${loaded.diagnostics.map((d) => JSON.stringify(d)).join('\n')}`);
    return loaded.pipeline;
  });
  const busy = pipelines.find((p) => p.name === 'busy')!;

  // ---- measuring (only inside the window the parent opens around the load)
  let open = false;
  const eld = monitorEventLoopDelay({ resolution: 5 });
  const serverMs: number[] = [];
  const handlerMs: number[] = [];
  const parts = { before: [] as number[], acquire: [] as number[], statements: [] as number[], commit: [] as number[] };

  const originalHandle = WebhookRoute.prototype.handle;
  type HandleCtx = { t0: number; txCalled?: number; txStarted?: number; bodyDone?: number };
  let current: HandleCtx | undefined;
  WebhookRoute.prototype.handle = async function (this: InstanceType<typeof WebhookRoute>, req) {
    const ctx: HandleCtx = { t0: performance.now() };
    // handle() runs synchronously up to its transaction: the patched execute picks ctx up.
    current = diag ? ctx : undefined;
    const answer = originalHandle.call(this, req);
    current = undefined;
    try {
      return await answer;
    } finally {
      const end = performance.now();
      if (open) {
        handlerMs.push(end - ctx.t0);
        if (ctx.txCalled !== undefined && ctx.txStarted !== undefined && ctx.bodyDone !== undefined) {
          parts.before.push(ctx.txCalled - ctx.t0);
          parts.acquire.push(ctx.txStarted - ctx.txCalled);
          parts.statements.push(ctx.bodyDone - ctx.txStarted);
          parts.commit.push(end - ctx.bodyDone);
        }
      }
    }
  };
  if (diag) {
    const originalExecute = TransactionBuilder.prototype.execute;
    TransactionBuilder.prototype.execute = function <T>(this: InstanceType<typeof TransactionBuilder>, callback: (trx: never) => Promise<T>): Promise<T> {
      const ctx = current;
      if (!ctx) return originalExecute.call(this, callback as never) as Promise<T>;
      current = undefined;
      ctx.txCalled = performance.now();
      return originalExecute.call(this, (async (trx: never) => {
        ctx.txStarted = performance.now();
        try {
          return await callback(trx);
        } finally {
          ctx.bodyDone = performance.now();
        }
      }) as never) as Promise<T>;
    } as typeof originalExecute;
  }

  const daemon = new Daemon({ db, config, pipelines, verifiers: registry.verifiers, port: 0, host: '127.0.0.1' });
  await daemon.start();
  const server = (daemon as unknown as { http: { server: http.Server } }).http.server;
  let httpInFlight = 0;
  server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    httpInFlight++;
    res.once('close', () => httpInFlight--);
    if (!open || req.method !== 'POST') return;
    requests++;
    const t0 = performance.now();
    res.once('finish', () => {
      if (open) serverMs.push(performance.now() - t0);
    });
  });

  const count = async () => {
    const [r] = await db.query<{ busy: number }>("SELECT count(*)::int AS busy FROM flow_runs WHERE pipeline = 'busy' AND status = 'running'");
    return r?.busy ?? 0;
  };
  let windowStart = 0;
  let cpuAtStart = process.cpuUsage();
  let requests = 0;
  let busyRowsAtStart = 0;
  let inspector: import('node:inspector/promises').Session | undefined;
  let heapAtStart = 0;
  const gc = (globalThis as { gc?: () => void }).gc;
  const heapMb = () => {
    gc?.();
    return Math.round((process.memoryUsage().heapUsed / 2 ** 20) * 10) / 10;
  };
  let paidDoneAtStart = 0;
  let sampler: NodeJS.Timeout | undefined;
  const busySamples: number[] = [];
  const inFlight = { min: Infinity, max: 0 };
  const busyRows = async () => (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM bench_busy'))[0]?.n ?? 0;
  const paidDone = async () => (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM flow_runs WHERE pipeline = 'paid' AND status = 'completed'"))[0]?.n ?? 0;

  const handlers: { [K in Command['cmd']]: (c: Extract<Command, { cmd: K }>) => Promise<unknown> } = {
    async busy(c) {
      const now = new Date();
      const ids: string[] = [];
      for (let i = 0; i < c.count; i++) {
        ids.push(await db.kysely.transaction().execute((trx) => daemon.claims.enqueueNew(trx, { pipeline: busy, inputs: { url: c.url, n: c.n }, trigger: 'manual', ref: null, now })));
      }
      // Queued with no notify: the idle workers find them within a poll (500 ms).
      const t0 = performance.now();
      let running = 0;
      while ((running = await count()) < c.count && performance.now() - t0 < 15_000) await sleep(50);
      return { ids, running, waitedMs: Math.round(performance.now() - t0) };
    },
    async 'window-start'() {
      busyRowsAtStart = await busyRows();
      paidDoneAtStart = await paidDone();
      heapAtStart = heapMb();
      serverMs.length = 0;
      handlerMs.length = 0;
      for (const p of Object.values(parts)) p.length = 0;
      busySamples.length = 0;
      inFlight.min = Infinity;
      inFlight.max = 0;
      eld.reset();
      eld.enable();
      sql?.reset();
      requests = 0;
      if (profile) {
        const { Session } = await import('node:inspector/promises');
        inspector = new Session();
        inspector.connect();
        await inspector.post('Profiler.enable');
        await inspector.post('Profiler.setSamplingInterval', { interval: 500 });
        await inspector.post('Profiler.start');
      }
      cpuAtStart = process.cpuUsage();
      sampler = setInterval(() => {
        const n = daemon.running.length;
        inFlight.min = Math.min(inFlight.min, n);
        inFlight.max = Math.max(inFlight.max, n);
        void count().then((b) => busySamples.push(b));
      }, 1000);
      windowStart = performance.now();
      open = true;
      return {};
    },
    async count() {
      return { busyRunning: await count(), inFlight: daemon.running.length };
    },
    async 'window-end'() {
      open = false;
      const windowMs = performance.now() - windowStart;
      const cpu = process.cpuUsage(cpuAtStart);
      const cpuMs = (cpu.user + cpu.system) / 1000;
      eld.disable();
      let profileText: string | undefined;
      if (inspector) {
        const { profile: p } = await inspector.post('Profiler.stop');
        inspector.disconnect();
        const { summarise, formatSummary } = await import('./cpu-top.ts');
        profileText = formatSummary(await summarise(p as unknown as import('./cpu-top.ts').CpuProfile, 30));
      }
      clearInterval(sampler);
      const sqlStats = sql?.stats(windowMs);
      const rows = await busyRows();
      const stats: WindowStats = {
        windowMs: Math.round(windowMs),
        loopDelay: histDist(eld),
        server: dist(serverMs),
        handler: dist(handlerMs),
        handlerParts: diag ? { before: dist(parts.before), acquire: dist(parts.acquire), statements: dist(parts.statements), commit: dist(parts.commit) } : undefined,
        busyRunning: { samples: busySamples, min: Math.min(...busySamples), max: Math.max(...busySamples) },
        inFlight: { min: inFlight.min, max: inFlight.max },
        busyItemsPerSecond: Math.round(((rows - busyRowsAtStart) / windowMs) * 1000),
        paidCompletedInWindow: (await paidDone()) - paidDoneAtStart,
        cpuMs: Math.round(cpuMs),
        cpuShare: Math.round((cpuMs / windowMs) * 100) / 100,
        cpuMsPerRequest: Math.round((cpuMs / Math.max(1, requests)) * 100) / 100,
        requests,
        heapMb: { start: heapAtStart, end: heapMb() },
        rssMb: Math.round(process.memoryUsage.rss() / 2 ** 20),
        profile: profileText,
        sql: sqlStats,
      };
      return stats;
    },
    async drain(c) {
      const t0 = performance.now();
      // Requests the generator gave up on may still be in the kernel's queues, and are then
      // processed late: first wait until no request is in flight and no event came for 2 s.
      let events = -1;
      let quietSince = performance.now();
      while (performance.now() - quietSince < 2000 && performance.now() - t0 < c.timeoutMs) {
        const [e] = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM flow_webhook_events');
        if (httpInFlight > 0 || e!.n !== events) quietSince = performance.now();
        events = e!.n;
        await sleep(200);
      }
      let last = { total: 0, active: 0 };
      for (;;) {
        const [r] = await db.query<{ total: number; active: number }>(
          "SELECT count(*)::int AS total, count(*) FILTER (WHERE status IN ('queued', 'running', 'waiting'))::int AS active FROM flow_runs WHERE pipeline = 'paid'",
        );
        last = r ?? last;
        if (last.total >= c.expected && last.active === 0) return { done: true, ms: Math.round(performance.now() - t0), ...last };
        if (performance.now() - t0 > c.timeoutMs) return { done: false, ms: Math.round(performance.now() - t0), ...last };
        await sleep(200);
      }
    },
    async verify(c): Promise<VerifyResult> {
      const one = async <T>(text: string, params: unknown[] = []) => (await db.query<T>(text, params))[0]!;
      const events = await one<{ n: number; with_run: number; matching: number }>(
        `SELECT count(*)::int AS n, count(e.run_id)::int AS with_run, count(r.id)::int AS matching
           FROM flow_webhook_events e LEFT JOIN flow_runs r ON r.id = e.run_id AND r.trigger_ref = e.event_id AND r.pipeline = 'paid'
          WHERE e.route = $1`,
        [ROUTE],
      );
      const runs = await one<{ n: number; distinct_refs: number }>("SELECT count(*)::int AS n, count(DISTINCT trigger_ref)::int AS distinct_refs FROM flow_runs WHERE pipeline = 'paid'");
      const byStatus = await db.query<{ status: string; n: number }>("SELECT status, count(*)::int AS n FROM flow_runs WHERE pipeline = 'paid' GROUP BY status");
      const dups = await db.query<{ ref: string; n: number }>(
        "SELECT trigger_ref AS ref, count(*)::int AS n FROM flow_runs WHERE pipeline = 'paid' GROUP BY trigger_ref HAVING count(*) > 1 ORDER BY 2 DESC LIMIT 10",
      );
      const dupCount = await one<{ n: number }>("SELECT count(*)::int AS n FROM (SELECT 1 FROM flow_runs WHERE pipeline = 'paid' GROUP BY trigger_ref HAVING count(*) > 1) d");
      const missing = await one<{ n: number }>(
        "SELECT count(*)::int AS n FROM unnest($1::text[]) AS a(id) WHERE NOT EXISTS (SELECT 1 FROM flow_runs r WHERE r.pipeline = 'paid' AND r.trigger_ref = a.id)",
        [c.ids],
      );
      const extra = await one<{ n: number }>("SELECT count(*)::int AS n FROM flow_runs r WHERE r.pipeline = 'paid' AND NOT (r.trigger_ref = ANY($1::text[]))", [c.ids]);
      const rows = await one<{ n: number; accepted: number }>('SELECT count(*)::int AS n, count(*) FILTER (WHERE p.event_id = ANY($1::text[]))::int AS accepted FROM bench_paid p', [c.ids]);
      const lat = await db.query<{ ms: number }>(
        "SELECT extract(epoch FROM (finished_at - started_at)) * 1000 AS ms FROM flow_runs WHERE pipeline = 'paid' AND finished_at IS NOT NULL",
      );
      const busyRuns = await db.query<{ status: string; n: number }>("SELECT status, count(*)::int AS n FROM flow_runs WHERE pipeline = 'busy' GROUP BY status");
      return {
        webhookEvents: events.n,
        eventsWithRun: events.with_run,
        eventsMatchingRun: events.matching,
        paidRuns: runs.n,
        paidByStatus: Object.fromEntries(byStatus.map((r) => [r.status, r.n])),
        distinctRefs: runs.distinct_refs,
        duplicateRefs: dupCount.n,
        duplicateSamples: dups.map((d) => `${d.ref} x${d.n}`),
        acceptedWithoutRun: missing.n,
        runsNotAccepted: extra.n,
        paidRows: rows.n,
        paidRowsAccepted: rows.accepted,
        runLatency: dist(lat.map((r) => Number(r.ms))),
        busyRuns: Object.fromEntries(busyRuns.map((r) => [r.status, r.n])),
      };
    },
    async stop() {
      const t0 = performance.now();
      await daemon.stop();
      await db.close();
      return { ms: Math.round(performance.now() - t0) };
    },
  };

  process.on('message', (m: { id: number } & Command) => {
    const handler = handlers[m.cmd] as (c: Command) => Promise<unknown>;
    void handler(m).then(
      (result) => process.send!({ id: m.id, ok: true, result }),
      (err: Error) => process.send!({ id: m.id, ok: false, error: err.stack ?? String(err) }),
    ).then(() => {
      if (m.cmd === 'stop') process.disconnect();
    });
  });
  process.stdin.on('end', () => process.exit(1)).resume(); // the parent died
  process.stdout.write(`${READY_MARK}${daemon.url}\n`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Times every statement sent to the database (client side: for PGlite this includes waiting
 * for its one connection inside PGlite, not kysely's queue), by normalised text.
 */
async function timeStatements(dbKind: DbKind) {
  const byText = new Map<string, { n: number; ms: number }>();
  let count = 0;
  // Busy time of the PGlite connection: the union of the intervals its statements ran.
  let busyMs = 0;
  let inside = 0;
  let since = 0;
  let target: object | null;
  if (dbKind === 'pglite') {
    const { PGlite } = await import('@electric-sql/pglite');
    target = PGlite.prototype;
  } else {
    const { default: pg } = await import('pg');
    target = pg.Client.prototype;
  }
  while (target && !Object.prototype.hasOwnProperty.call(target, 'query')) target = Object.getPrototypeOf(target);
  if (!target) throw new Error('cannot find the query method to time statements');
  const t = target as { query: (...a: unknown[]) => unknown };
  const original = t.query;
  t.query = function (this: unknown, ...a: unknown[]) {
    const text = typeof a[0] === 'string' ? a[0] : ((a[0] as { text?: string })?.text ?? '?');
    const key = text
      .replace(/\s+/g, ' ')
      .replace(/\(\$\d+(, \$\d+)*\)(, \(\$\d+(, \$\d+)*\))+/g, '(...), ...')
      .replace(/\$\d+(, \$\d+){3,}/g, '$.., ..')
      .trim()
      .slice(0, 100);
    const start = performance.now();
    if (inside++ === 0) since = start;
    const done = () => {
      const end = performance.now();
      if (--inside === 0) busyMs += end - since;
      count++;
      const e = byText.get(key) ?? { n: 0, ms: 0 };
      e.n++;
      e.ms += end - start;
      byText.set(key, e);
    };
    const r = original.apply(this, a) as Promise<unknown>;
    return r && typeof r.then === 'function' ? r.finally(done) : (done(), r);
  };
  return {
    reset() {
      byText.clear();
      count = 0;
      busyMs = 0;
      if (inside) since = performance.now();
    },
    stats(windowMs: number) {
      const top = [...byText.entries()]
        .sort((a, b) => b[1].ms - a[1].ms)
        .slice(0, 15)
        .map(([text, v]) => ({ text, n: v.n, totalMs: Math.round(v.ms), meanMs: Math.round((v.ms / v.n) * 100) / 100 }));
      return { statements: count, perSecond: Math.round((count / windowMs) * 1000), busyShare: Math.round((busyMs / windowMs) * 1000) / 1000, top };
    },
  };
}

// ---------------------------------------------------------------- parent

const children = new Set<ChildProcess>();

function spawnCase(argv: string[], ipc = false): ChildProcess {
  const proc = spawn(process.execPath, ['--import', 'tsx', '--expose-gc', SELF, ...argv], { stdio: ipc ? ['pipe', 'pipe', 'inherit', 'ipc'] : ['pipe', 'pipe', 'inherit'] });
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
  return proc;
}

/** Starts a server case and waits for its READY line. */
function startServerCase(argv: string[], ipc = false): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawnCase(argv, ipc);
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout! });
    rl.on('line', (line) => {
      if (line.startsWith(READY_MARK)) resolve({ url: line.slice(READY_MARK.length).trim(), proc });
      else process.stderr.write(`[${argv[1]}] ${line}\n`);
    });
    proc.once('exit', (code) => reject(new Error(`case ${argv.join(' ')} exited (${code}) before it was ready`)));
  });
}

function stopServerCase(proc: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    proc.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    proc.stdin?.end();
  });
}

function runLoad(argv: string[]): Promise<LoadResult> {
  const proc = spawnCase(['--case', 'load', ...argv]);
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stdin!.end();
  return new Promise((resolve, reject) => {
    proc.once('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith(RESULT_MARK));
      if (code !== 0 || !line) return reject(new Error(`load generator failed (exit ${code})\n${out.slice(0, 2000)}`));
      resolve(JSON.parse(line.slice(RESULT_MARK.length)) as LoadResult);
    });
  });
}

/** The daemon child, driven over IPC. */
class DaemonChild {
  private nextId = 1;
  private pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  constructor(
    readonly url: string,
    readonly proc: ChildProcess,
  ) {
    proc.on('message', (m: { id: number; ok: boolean; result?: unknown; error?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(`daemon: ${m.error}`));
    });
    proc.once('exit', (code) => {
      for (const p of this.pending.values()) p.reject(new Error(`the daemon process exited (${code})`));
      this.pending.clear();
    });
  }
  call<T>(command: Command): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.proc.send({ id, ...command });
    });
  }
}

interface Replay {
  sent: number;
  duplicate: number;
  other: string[];
  runsBefore: number;
  runsAfter: number;
  eventsBefore: number;
  eventsAfter: number;
}

/** Posts accepted events again (re-signed now, as Stripe does when it retries). */
async function replay(url: string, ids: string[]): Promise<{ duplicate: number; other: string[] }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  let duplicate = 0;
  const other: string[] = [];
  for (const id of ids) {
    const body = checkoutEvent(id);
    const answer = await new Promise<string>((resolve) => {
      const req = http.request(new URL(ROUTE, url), { method: 'POST', agent, headers: signed(body) }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (d: string) => (text += d));
        res.on('end', () => {
          let status = '?';
          try {
            status = (JSON.parse(text) as { status?: string }).status ?? '?';
          } catch {}
          resolve(`${res.statusCode} ${status}`);
        });
      });
      req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error('timeout')));
      req.on('error', (err) => resolve(`error ${err.message}`));
      req.end(body);
    });
    if (answer === '200 duplicate') duplicate++;
    else if (other.length < 10) other.push(`${id}: ${answer}`);
  }
  agent.destroy();
  return { duplicate, other };
}

interface DbRun {
  db: DbKind;
  bare: LoadResult;
  daemon: LoadResult;
  busyStart: { running: number; waitedMs: number };
  busyMid: { busyRunning: number; inFlight: number };
  window: WindowStats;
  drain: { done: boolean; ms: number; total: number; active: number };
  verify: VerifyResult;
  replay: Replay;
  stopMs: number;
  /** 1-minute load average of the machine after the baseline and after the daemon's load (other processes count). */
  loadAvg: { bare: number; daemon: number };
}

const f = (v: number | undefined, digits = 1) => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits));


async function parentMain(args: Map<string, string>): Promise<void> {
  const dbs = (args.get('db') ?? 'pglite').split(',').map((s) => s.trim()).filter(Boolean) as DbKind[];
  for (const d of dbs) if (d !== 'pglite' && d !== 'postgres') throw new Error(`--db takes pglite and/or postgres, got ${d}`);
  const rate = num(args, 'rate', 200, 0.001);
  const seconds = num(args, 'seconds', 30, 0.001);
  const warmup = Math.round(num(args, 'warmup', 100));
  const workers = Math.round(num(args, 'workers', 8, 1));
  const busyCount = Math.round(num(args, 'busy', 4));
  const busyDelay = num(args, 'busy-delay', 20);
  const replayCount = Math.round(num(args, 'replay', 50));
  const drainTimeoutMs = num(args, 'drain-timeout', 120) * 1000;
  const diag = args.has('diag');
  const sqlTiming = args.has('sql-timing');
  const profile = args.has('profile');
  const pool = args.get('pool');
  const pgUrl = args.get('pg-url') ?? process.env.FLOWS_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  if (workers < busyCount + 1) throw new Error(`--workers (${workers}) must exceed --busy (${busyCount}), or no worker is left for the webhook runs`);
  // Long enough to outlast the load: 2 items in flight, each at least busyDelay ms.
  const busyItems = Math.min(1_000_000, Math.ceil((2 * 1000) / Math.max(1, busyDelay)) * Math.ceil(seconds + warmup / rate + drainTimeoutMs / 1000 + 60));

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
  const say = (s: string) => process.stderr.write(`${s}\n`);
  const t0 = performance.now();
  const runs: DbRun[] = [];
  const notes: string[] = [];
  const loadArgs = (url: string, tag: string) => ['--url', url, '--tag', tag, '--rate', String(rate), '--seconds', String(seconds), '--warmup', String(warmup)];

  try {
    const upstream = await startServerCase(['--case', 'upstream', '--delay', String(busyDelay)]);
    cleanups.push(() => stopServerCase(upstream.proc));
    say(`upstream server at ${upstream.url} (${busyDelay} ms per request)`);

    for (const dbKind of dbs) {
      // ---- baseline: the bare fastify server, same load
      const bareServer = await startServerCase(['--case', 'bare']);
      say(`[${dbKind}] baseline: bare fastify at ${bareServer.url}; ${rate} req/s for ${seconds} s (+${warmup} warm-up requests) ...`);
      const bare = await runLoad(loadArgs(bareServer.url, `bare${randomBytes(3).toString('hex')}`));
      const bareLoadAvg = loadavg()[0]!;
      await stopServerCase(bareServer.proc);
      say(`[${dbKind}] baseline: p50 ${bare.latency.p50} ms, p99 ${bare.latency.p99} ms, max ${bare.latency.max} ms, lost ${bare.lost}`);

      // ---- the daemon
      let dsn: string;
      if (dbKind === 'postgres') {
        const { createPostgresDatabase } = await import('../test/helpers/db.ts');
        let created: Awaited<ReturnType<typeof createPostgresDatabase>>;
        try {
          created = await createPostgresDatabase(pgUrl, 'flows_bench');
        } catch (err) {
          notes.push(`postgres skipped: ${pgUrl} unreachable or refused CREATE DATABASE: ${(err as Error).message}`);
          say(notes.at(-1)!);
          continue;
        }
        cleanups.push(() => created.drop());
        dsn = created.url;
        say(`[postgres] database ${new URL(dsn).pathname.slice(1)} created (dropped at the end)`);
      } else if (args.has('pglite-memory')) {
        dsn = 'memory://';
      } else {
        dsn = mkdtempSync(join(tmpdir(), 'flows-bench-webhooks-'));
        const dir = dsn;
        cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      }
      const started = await startServerCase(
        ['--case', 'daemon', '--db', dbKind, '--dsn', dsn, '--workers', String(workers), ...(diag ? ['--diag'] : []), ...(sqlTiming ? ['--sql-timing'] : []), ...(profile ? ['--profile'] : []), ...(pool ? ['--pool', pool] : [])],
        true,
      );
      const daemon = new DaemonChild(started.url, started.proc);
      let stopped = false;
      cleanups.push(async () => {
        if (!stopped) await daemon.call({ cmd: 'stop' }).catch(() => {});
        await stopServerCase(started.proc);
      });
      say(`[${dbKind}] daemon at ${daemon.url} (${workers} workers); queueing ${busyCount} busy runs of ${busyItems} items ...`);
      const busyStart = await daemon.call<{ running: number; waitedMs: number }>({ cmd: 'busy', count: busyCount, url: upstream.url, n: busyItems });
      say(`[${dbKind}] ${busyStart.running} busy runs running after ${busyStart.waitedMs} ms; load ${rate} req/s for ${seconds} s ...`);
      if (busyStart.running < busyCount) notes.push(`${dbKind}: only ${busyStart.running} of ${busyCount} busy runs were running when the load started`);

      await daemon.call({ cmd: 'window-start' });
      const tag = `${dbKind}${randomBytes(3).toString('hex')}`;
      const loading = runLoad(loadArgs(daemon.url, tag));
      // The middle of the measured window (the load child takes ~1 s to start).
      await sleep(1000 + (warmup / rate) * 1000 + (seconds * 1000) / 2);
      const busyMid = await daemon.call<{ busyRunning: number; inFlight: number }>({ cmd: 'count' });
      const load = await loading;
      const daemonLoadAvg = loadavg()[0]!;
      const window = await daemon.call<WindowStats>({ cmd: 'window-end' });
      say(
        `[${dbKind}] daemon: p50 ${load.latency.p50} ms, p99 ${load.latency.p99} ms, max ${load.latency.max} ms, lost ${load.lost}, accepted ${load.accepted}; busy running mid-load ${busyMid.busyRunning}; waiting for runs ...`,
      );
      const drain = await daemon.call<DbRun['drain']>({ cmd: 'drain', expected: load.accepted, timeoutMs: drainTimeoutMs });
      const ids = load.acceptedIdx.map((i) => eventId(tag, i));
      const verify = await daemon.call<VerifyResult>({ cmd: 'verify', ids });
      say(`[${dbKind}] runs drained ${drain.done ? 'in' : 'NOT within'} ${drain.ms} ms; replaying ${Math.min(replayCount, ids.length)} events ...`);
      const sample = ids.filter((_, i) => i % Math.max(1, Math.floor(ids.length / replayCount)) === 0).slice(0, replayCount);
      const rep = await replay(daemon.url, sample);
      await sleep(1500); // a run a replay wrongly queued would show up by now
      const after = await daemon.call<VerifyResult>({ cmd: 'verify', ids });
      const { ms: stopMs } = await daemon.call<{ ms: number }>({ cmd: 'stop' });
      stopped = true;
      await stopServerCase(started.proc);
      runs.push({
        db: dbKind,
        bare,
        daemon: load,
        busyStart,
        busyMid,
        window,
        drain,
        verify,
        replay: {
          sent: sample.length,
          duplicate: rep.duplicate,
          other: rep.other,
          runsBefore: verify.paidRuns,
          runsAfter: after.paidRuns,
          eventsBefore: verify.webhookEvents,
          eventsAfter: after.webhookEvents,
        },
        stopMs,
        loadAvg: { bare: Math.round(bareLoadAvg * 100) / 100, daemon: Math.round(daemonLoadAvg * 100) / 100 },
      });
    }
  } finally {
    await cleanup();
  }

  // ------------------------------------------------------------ report
  const out: string[] = [''];
  out.push(`webhook load: ${rate} req/s for ${seconds} s (+${warmup} warm-up requests not in the figures), ${busyCount} busy runs, ${workers} workers`);
  out.push('latency = planned send -> end of response (ms); service = actual send -> end of response');
  out.push(
    table(
      ['db', 'server', 'p50', 'p90', 'p99', 'max', 'service p50', 'service p99', 'lost', 'accepted', 'sent', 'gen. lag p99', 'new conns'],
      runs.flatMap((r) =>
        (['bare', 'daemon'] as const).map((k) => {
          const l = r[k];
          return [r.db, k, f(l.latency.p50, 2), f(l.latency.p90, 2), f(l.latency.p99, 2), f(l.latency.max, 2), f(l.service.p50, 2), f(l.service.p99, 2), `${l.lost}`, `${l.accepted}`, `${l.sent}`, f(l.sendLag.p99, 2), `${l.newConnections}`];
        }),
      ),
    ),
  );
  out.push('');
  out.push(
    table(
      ['db', 'p50 daemon/bare', 'p99 daemon/bare', 'busy running (start/mid/min..max)', 'daemon loop delay p50/p99/max', 'daemon CPU', 'CPU ms/request', 'server p50/p99', 'handler p50/p99', 'busy items/s', 'paid runs done in window', 'heap MB start->end'],
      runs.map((r) => [
        r.db,
        f(r.daemon.latency.p50 / r.bare.latency.p50, 2),
        f(r.daemon.latency.p99 / r.bare.latency.p99, 2),
        `${r.busyStart.running}/${r.busyMid.busyRunning}/${r.window.busyRunning.min}..${r.window.busyRunning.max}`,
        `${f(r.window.loopDelay.p50)}/${f(r.window.loopDelay.p99)}/${f(r.window.loopDelay.max)}`,
        `${f(r.window.cpuShare * 100, 0)}%`,
        f(r.window.cpuMsPerRequest, 2),
        `${f(r.window.server.p50, 2)}/${f(r.window.server.p99, 2)}`,
        `${f(r.window.handler.p50, 2)}/${f(r.window.handler.p99, 2)}`,
        `${r.window.busyItemsPerSecond}`,
        `${r.window.paidCompletedInWindow}`,
        `${r.window.heapMb.start}->${r.window.heapMb.end}`,
      ]),
    ),
  );
  out.push('');
  out.push(
    table(
      ['db', 'accepted', 'webhook_events', 'paid runs', 'completed', 'dup. refs', 'accepted w/o run', 'bench_paid rows', 'drain ms', 'drain runs/s', 'run latency p50/p99 ms', 'replay dup/sent', 'runs after replay'],
      runs.map((r) => [
        r.db,
        `${r.daemon.accepted}`,
        `${r.verify.webhookEvents}`,
        `${r.verify.paidRuns}`,
        `${r.verify.paidByStatus.completed ?? 0}`,
        `${r.verify.duplicateRefs}`,
        `${r.verify.acceptedWithoutRun}`,
        `${r.verify.paidRows}`,
        `${r.drain.ms}${r.drain.done ? '' : ' (timeout)'}`,
        r.drain.ms > 3000 ? f(((r.verify.paidByStatus.completed ?? 0) - r.window.paidCompletedInWindow) / (r.drain.ms / 1000), 1) : '-',
        `${f(r.verify.runLatency.p50, 0)}/${f(r.verify.runLatency.p99, 0)}`,
        `${r.replay.duplicate}/${r.replay.sent}`,
        `${r.replay.runsAfter}`,
      ]),
    ),
  );
  if (diag) {
    out.push('', 'handler parts in the daemon (ms, p50/p99): verify+parse, wait for a connection + BEGIN, statements, COMMIT');
    for (const r of runs) {
      const p = r.window.handlerParts!;
      out.push(`  ${r.db}: ${f(p.before.p50, 2)}/${f(p.before.p99, 2)}  ${f(p.acquire.p50, 2)}/${f(p.acquire.p99, 2)}  ${f(p.statements.p50, 2)}/${f(p.statements.p99, 2)}  ${f(p.commit.p50, 2)}/${f(p.commit.p99, 2)}`);
    }
  }
  for (const r of runs) {
    if (!r.window.sql) continue;
    const s = r.window.sql;
    const busy = r.db === 'pglite' ? `, PGlite busy running statements ${(s.busyShare * 100).toFixed(0)}% of the time` : '';
    out.push('', `${r.db}: ${s.statements} statements in the window (${s.perSecond}/s)${busy}; by total time (n, total ms incl. waiting, mean ms, text):`);
    for (const t of s.top) out.push(`  ${String(t.n).padStart(7)} ${String(t.totalMs).padStart(7)} ${f(t.meanMs, 2).padStart(7)}  ${t.text}`);
  }
  out.push('', `machine: ${(await import('node:os')).cpus().length} CPUs; 1-min load average after the baseline / after the daemon load: ${runs.map((r) => `${r.db} ${r.loadAvg.bare}/${r.loadAvg.daemon}`).join(', ')}`);
  for (const r of runs) if (r.window.profile) out.push('', `${r.db}: CPU profile of the daemon over the load window`, r.window.profile);
  for (const r of runs) {
    out.push('', `${r.db}: daemon p99/max latency per second of the window: ${r.daemon.perSecond.map((s) => `${f(s.p99, 0)}/${f(s.max, 0)}`).join(' ')}`);
    if (r.daemon.lostSamples.length) out.push(`${r.db}: lost requests (first ${r.daemon.lostSamples.length}): ${r.daemon.lostSamples.join('; ')}`);
    if (r.replay.other.length) out.push(`${r.db}: replays not answered "duplicate": ${r.replay.other.join('; ')}`);
  }

  const goals: { db: DbKind; goal: string; pass: boolean; detail: string }[] = [];
  for (const r of runs) {
    const v = r.verify;
    const acc = r.daemon.accepted;
    goals.push({ db: r.db, goal: `p99 <= ${GOAL_P99_MS} ms`, pass: r.daemon.latency.p99 <= GOAL_P99_MS, detail: `p99 ${r.daemon.latency.p99} ms (bare ${r.bare.latency.p99} ms)` });
    goals.push({ db: r.db, goal: '0 lost', pass: r.daemon.lost === 0 && r.daemon.lostWarmup === 0, detail: `${r.daemon.lost} lost (+${r.daemon.lostWarmup} in warm-up) of ${r.daemon.sent}` });
    goals.push({
      db: r.db,
      goal: 'runs == accepted',
      pass: v.paidRuns === acc && v.webhookEvents === acc && v.acceptedWithoutRun === 0 && v.runsNotAccepted === 0,
      detail: `accepted ${acc}, webhook_events ${v.webhookEvents}, runs ${v.paidRuns}, accepted without run ${v.acceptedWithoutRun}, runs of events not accepted ${v.runsNotAccepted}`,
    });
    goals.push({
      db: r.db,
      goal: `every run completed (waited up to ${drainTimeoutMs / 1000} s after the load)`,
      pass: r.drain.done && (v.paidByStatus.completed ?? 0) === v.paidRuns && v.paidRows === v.paidRuns && v.paidRowsAccepted === acc,
      detail: `completed ${v.paidByStatus.completed ?? 0} of ${v.paidRuns} after ${r.drain.ms} ms (${JSON.stringify(v.paidByStatus)}), bench_paid rows ${v.paidRows} (${v.paidRowsAccepted} of accepted events)`,
    });
    goals.push({
      db: r.db,
      goal: 'no duplicates',
      pass: v.duplicateRefs === 0 && v.distinctRefs === v.paidRuns && v.eventsMatchingRun === v.webhookEvents && r.replay.duplicate === r.replay.sent && r.replay.runsAfter === r.replay.runsBefore && r.replay.eventsAfter === r.replay.eventsBefore,
      detail: `duplicate refs ${v.duplicateRefs}; replays answered duplicate ${r.replay.duplicate}/${r.replay.sent}; runs ${r.replay.runsBefore} -> ${r.replay.runsAfter} after replay`,
    });
    goals.push({ db: r.db, goal: `${busyCount} busy runs running during the load`, pass: r.busyMid.busyRunning === busyCount && r.window.busyRunning.min === busyCount, detail: `mid ${r.busyMid.busyRunning}, sampled ${r.window.busyRunning.min}..${r.window.busyRunning.max}` });
  }
  out.push('', 'goals:');
  for (const g of goals) out.push(`${g.pass ? 'PASS' : 'FAIL'}  ${g.db}: ${g.goal}  [${g.detail}]`);
  for (const n of notes) out.push(`note: ${n}`);
  out.push('', `bench took ${((performance.now() - t0) / 1000).toFixed(0)} s`, '');
  const strip = (l: LoadResult) => {
    const { acceptedIdx: _a, ...rest } = l;
    return rest;
  };
  out.push(
    `${RESULT_MARK}${JSON.stringify({
      bench: 'webhooks',
      node: process.version,
      rate,
      seconds,
      warmup,
      workers,
      busy: busyCount,
      busy_delay_ms: busyDelay,
      runs: runs.map((r) => ({
        db: r.db,
        p50_ms: r.daemon.latency.p50,
        p99_ms: r.daemon.latency.p99,
        max_ms: r.daemon.latency.max,
        lost: r.daemon.lost,
        accepted: r.daemon.accepted,
        paid_runs: r.verify.paidRuns,
        duplicates: r.verify.duplicateRefs,
        bare_p50_ms: r.bare.latency.p50,
        bare_p99_ms: r.bare.latency.p99,
        ratio_p50: Math.round((r.daemon.latency.p50 / r.bare.latency.p50) * 100) / 100,
        ratio_p99: Math.round((r.daemon.latency.p99 / r.bare.latency.p99) * 100) / 100,
        busy_running: { start: r.busyStart.running, mid: r.busyMid.busyRunning, min: r.window.busyRunning.min, max: r.window.busyRunning.max },
        daemon: strip(r.daemon),
        bare: strip(r.bare),
        window: r.window,
        drain: r.drain,
        verify: r.verify,
        replay: r.replay,
        stop_ms: r.stopMs,
      })),
      goals,
      notes,
    })}`,
  );
  process.stdout.write(`${out.join('\n')}\n`);
  if (goals.some((g) => !g.pass) || notes.some((n) => n.includes('skipped'))) process.exitCode = 1;
}

const args = parseArgs(process.argv.slice(2));
switch (args.get('case')) {
  case undefined:
    await parentMain(args);
    break;
  case 'upstream':
    await upstreamMain(args);
    break;
  case 'bare':
    await bareMain();
    break;
  case 'load':
    await loadMain(args);
    break;
  case 'daemon':
    await daemonMain(args);
    break;
  default:
    throw new Error(`unknown --case ${args.get('case')}`);
}
