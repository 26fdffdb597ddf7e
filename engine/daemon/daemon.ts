import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { sql } from 'kysely';
import { type Clock, systemClock } from '../clock.ts';
import type { EngineConfig } from '../config.ts';
import { type Database, openDatabase } from '../db/connect.ts';
import { parseDuration } from '../duration.ts';
import { errorMessage } from '../errors.ts';
import { RunEvents } from '../events.ts';
import { executeRun, type RunResult } from '../executor/run.ts';
import { type Logger, silentLogger } from '../log.ts';
import type { Pipeline } from '../pipeline/types.ts';
import { RateLimits } from '../flow-control/rate-limits.ts';
import type { AnyConnector } from '../connector.ts';
import { sandboxedConnectors, type UnsetConnector, unsetConnectors } from '../connector-open.ts';
import { Resources } from '../resources.ts';
import type { Scrubber } from '../secrets.ts';
import { type RunRow, RunStore } from '../store/index.ts';
import { RunClaims } from './claims.ts';
import { type Dispatched, EventDispatcher } from './dispatcher.ts';
import { DaemonMetrics } from './metrics.ts';
import { type RunJob, RunQueue } from './queue.ts';
import { type FireOutcome, Scheduler } from './scheduler.ts';
import { type AnyVerifierType, builtinVerifiers } from '../verifier.ts';
import { missingSecretLine, missingSecretsMessage, missingWebhookSecrets, WebhookRoute } from './webhooks.ts';

export interface DaemonOptions {
  db: Database;
  config: EngineConfig;
  pipelines: readonly Pipeline[];
  clock?: Clock;
  log?: Logger;
  env?: Record<string, string | undefined>;
  scrub?: Scrubber;
  /** HTTP port (0 picks a free one); config daemon.port, else 8080. */
  port?: number;
  host?: string;
  /** Shares named rate limits across daemons. */
  redisUrl?: string;
  /**
   * Background loops (scheduler, dispatcher, lease reaper) on timers. Tests turn them off
   * and call tick() with an injected clock instead.
   */
  loops?: boolean;
  /** Run events of every run this daemon executes (tests and progress). */
  events?: RunEvents;
  /** Clients, browser and sandboxes shared by every run; by default made here and closed on stop. */
  resources?: Resources;
  /** The pipelines folder (templates, prompts) for the resources made here (default ./pipelines). */
  projectDir?: string;
  /** Pages served besides the webhooks (report links, unsubscribe), each with its own handler. */
  pages?: readonly Page[];
  /** Webhook verifier types by name, from the registry (default: the engine's hmac-sha256 only). */
  verifiers?: ReadonlyMap<string, AnyVerifierType>;
  /** The registry's connectors: those that will answer from sandboxes are named at start, in /healthz and to runs. */
  connectors?: Iterable<AnyConnector>;
}

/** A route of the daemon's HTTP server, defined outside the engine. */
export interface Page {
  /** A fastify route path, e.g. /reports/:token. */
  readonly path: string;
  /** The methods it answers (default GET only; a GET page answers HEAD too); a POST body comes raw, as received. */
  readonly methods?: readonly ('GET' | 'POST')[];
  handle(request: PageRequest, context: PageContext): Promise<PageAnswer>;
}

export interface PageRequest {
  /** HEAD reaches a GET page as HEAD, so it can tell one apart (link checkers send it); its answer's body is dropped. */
  method: 'GET' | 'POST' | 'HEAD';
  /** The visitor's address: the connecting one, or through daemon.trust_proxy the one its proxy names. */
  ip: string;
  params: Record<string, string>;
  query: Record<string, string>;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export interface PageContext {
  readonly db: Database;
  /** The config runs see (public_url filled in). */
  readonly config: EngineConfig;
  readonly resources: Resources;
  readonly clock: Clock;
  readonly log: Logger;
  /** A counter of this daemon's /metrics, made on first use; the same name gives the same counter. */
  counter(name: string, help: string, labelNames: readonly string[]): PageCounter;
  /**
   * Says this request committed events that start runs (a person pressed a button and waits):
   * the daemon hands them to their pipelines now instead of at its loop's next tick. Call it
   * after the transaction commits. Without the background loops (tests tick) it does nothing.
   */
  eventsRecorded(): void;
}

/** What a page may do with a counter of /metrics. */
export interface PageCounter {
  inc(labels: Record<string, string>, value?: number): void;
}

export interface PageAnswer {
  status: number;
  type: string;
  body: string | Buffer;
  headers?: Record<string, string>;
}

/** What one tick did: schedule fires, events handed to pipelines, runs taken over. */
export interface TickOutcome {
  fired: FireOutcome[];
  dispatched: Dispatched[];
  reaped: string[];
}

const DEFAULTS = { port: 8080, host: '127.0.0.1', workers: 2, lease: '60s', poll: '2s', park_after: '60s', stop_timeout: '25s' };

/**
 * `flows daemon`: one process with the scheduler, the workers and the HTTP server.
 *
 * - Schedules fire through flow_schedules (each fire once across daemons) and queue runs.
 * - Webhook routes and the event dispatcher queue runs too; every queued run is a row plus
 *   a pg-boss job committed together.
 * - Workers take jobs, claim the run with a lease they renew, and execute it; a quota wait
 *   longer than park_after parks the run until its window instead of holding the worker.
 * - A lease that runs out (a dead daemon) is found by any daemon's reaper and queued again;
 *   the run resumes where it was, with no effect repeated.
 * - stop() (SIGTERM): no new work; in-flight steps finish (aborted after stop_timeout);
 *   interrupted runs go back to the queue; claims released.
 */
export class Daemon {
  readonly workerId: string;
  readonly store: RunStore;
  readonly queue: RunQueue;
  readonly claims: RunClaims;
  readonly scheduler: Scheduler;
  readonly dispatcher: EventDispatcher;
  readonly metrics: DaemonMetrics;
  readonly events: RunEvents;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly settings: { workers: number; leaseMs: number; pollMs: number; parkAfterMs: number; stopTimeoutMs: number };
  private readonly byName: Map<string, Pipeline>;
  private readonly routes: WebhookRoute[] = [];
  private readonly stopRuns = new AbortController();
  private readonly abortRuns = new AbortController();
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly timers: NodeJS.Timeout[] = [];
  private rateLimits: RateLimits;
  readonly resources: Resources;
  private http?: FastifyInstance;
  /** On Postgres, webhooks answer from a small pool of their own, never queued behind runs. */
  private webhookDb?: Database;
  private stopping = false;
  private ticking?: Promise<unknown>;
  /** The config runs see: public_url filled in with this daemon's address once it listens, unless the config sets one. */
  private runConfig: EngineConfig;
  /** Connectors that answer from their sandboxes (sample data) in this process. */
  readonly sandboxes: readonly UnsetConnector[];

  constructor(private readonly options: DaemonOptions) {
    this.clock = options.clock ?? systemClock;
    this.runConfig = options.config;
    const connectors = [...(options.connectors ?? [])];
    this.sandboxes = sandboxedConnectors(connectors, options.config);
    this.log = (options.log ?? silentLogger).child({ component: 'daemon' });
    this.workerId = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    const d = { ...DEFAULTS, ...options.config.daemon };
    const ms = (v: string) => parseDuration(v) ?? 0;
    this.settings = { workers: d.workers, leaseMs: ms(d.lease), pollMs: Math.max(500, ms(d.poll)), parkAfterMs: ms(d.park_after), stopTimeoutMs: ms(d.stop_timeout) };
    this.store = new RunStore(options.db, options.scrub);
    this.queue = new RunQueue(options.db, { pollSeconds: this.settings.pollMs / 1000, log: this.log });
    this.claims = new RunClaims(options.db, this.queue);
    this.scheduler = new Scheduler(options.db, this.claims, this.log);
    this.dispatcher = new EventDispatcher(options.db, this.claims, this.log);
    this.events = options.events ?? new RunEvents();
    this.rateLimits = new RateLimits(options.config, { redisUrl: options.redisUrl });
    this.resources =
      options.resources ??
      new Resources({ config: options.config, env: options.env ?? {}, log: options.log ?? silentLogger, clock: this.clock, projectDir: options.projectDir ?? 'pipelines', stateDir: '.flows' });
    this.byName = new Map(options.pipelines.map((p) => [p.name, p]));
    const missing = [
      ...missingWebhookSecrets(options.pipelines, options.config, options.verifiers ?? new Map(builtinVerifiers.map((v) => [v.type, v]))).map(missingSecretLine),
      ...refusedConnectors(connectors, options.config).map((c) => `connector ${c.unset}; the config says sandboxes: never, so every run that uses it would fail`),
    ];
    if (missing.length) throw new Error(missingSecretsMessage(missing));
    const paths = new Map<string, string>();
    for (const p of options.pipelines) {
      if (p.trigger.kind !== 'webhook') continue;
      const route = new WebhookRoute(p, options.config, options.db, this.claims, this.clock, options.verifiers);
      const other = paths.get(route.path);
      if (other) throw new Error(`pipelines ${other} and ${p.name} both use webhook path ${route.path}`);
      paths.set(route.path, p.name);
      this.routes.push(route);
    }
    this.metrics = new DaemonMetrics({ store: this.store, queue: this.queue, dispatcher: this.dispatcher, config: options.config, clock: this.clock });
  }

  /** The HTTP server's address once listening. */
  get url(): string | undefined {
    const address = this.http?.server.address();
    return address && typeof address === 'object' ? `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}` : undefined;
  }

  async start(): Promise<void> {
    await this.queue.start();
    if (this.options.db.url && this.routes.length) {
      const WEBHOOK_POOL = 4;
      this.webhookDb = await openDatabase({ url: this.options.db.url, poolSize: WEBHOOK_POOL, migrate: false });
      // Connected up front: the first requests do not pay for connecting.
      const db = this.webhookDb;
      await Promise.all(Array.from({ length: WEBHOOK_POOL }, () => db.kysely.transaction().execute((trx) => sql`SELECT 1`.execute(trx))));
      for (const route of this.routes) route.useDatabase(db);
    }
    this.http = this.buildHttp();
    const d = this.options.config.daemon ?? {};
    await this.http.listen({ port: this.options.port ?? d.port ?? DEFAULTS.port, host: this.options.host ?? d.host ?? DEFAULTS.host });
    // Links in emails point at this daemon, on the port it really listens on, unless the config says where it is reached from.
    if (!this.options.config.public_url) this.runConfig = { ...this.options.config, public_url: reachableUrl(this.http.server.address()) };
    await this.queue.work(this.settings.workers, (job) => this.execute(job));
    const pipelines = [...this.byName.values()].map((p) => `${p.name} (${p.trigger.kind})`);
    // Said before "listening": whoever waits for that line has seen this one.
    if (this.sandboxes.length) {
      const names = this.sandboxes.map((s) => s.name);
      this.log.warn(
        { sandboxes: names },
        `sandboxes answer for ${names.join(', ')}: reports and email from them are sample data, not real (${this.sandboxes.map((s) => s.unset).join('; ')}; in production write sandboxes: never)`,
      );
    }
    this.log.info({ worker: this.workerId, url: this.url, database: this.options.db.description, workers: this.settings.workers, pipelines }, `flows daemon listening on ${this.url}`);
    if (this.options.loops !== false) {
      // A first tick at once: runs whose daemon died are taken over, missed fires caught up.
      void this.tickSafely();
      this.every(Math.min(5000, this.settings.pollMs * 2), () => this.tickSafely());
    }
  }

  /**
   * One round of the background work: fire due schedules, dispatch events, and queue again
   * runs whose lease ran out. The loops call it; tests call it with an injected clock.
   */
  async tick(): Promise<TickOutcome> {
    if (this.stopping) return { fired: [], dispatched: [], reaped: [] };
    const now = this.clock.now();
    const pipelines = [...this.byName.values()];
    const fired = await this.scheduler.tick(pipelines, now);
    const dispatched = await this.dispatchAll(pipelines, now);
    const reaped = await this.claims.reapExpired(now);
    for (const id of reaped) this.log.warn({ run: id }, 'run lease ran out (its daemon stopped or lost the database): queued again to resume');
    const queued = fired.filter((f) => f.action === 'started').length + dispatched.filter((d) => d.action === 'started').length + reaped.length;
    if (queued) this.queue.wake(queued);
    return { fired, dispatched, reaped };
  }

  /** Every undispatched event to its pipelines, a batch at a time. */
  private async dispatchAll(pipelines: readonly Pipeline[], now: Date): Promise<Dispatched[]> {
    const dispatched: Dispatched[] = [];
    for (let round = 0; round < 50; round++) {
      const r = await this.dispatcher.dispatch(pipelines, now);
      dispatched.push(...r.outcomes);
      if (r.events < 100) break;
    }
    return dispatched;
  }

  private dispatching?: Promise<unknown>;
  private dispatchAgain = false;

  /**
   * A page recorded events: dispatch them now, and wake a worker per run queued. One dispatch
   * at a time; calls during one make one more after it (its read may have missed their events).
   */
  private dispatchSoon(): void {
    if (this.stopping || this.options.loops === false) return;
    if (this.dispatching) {
      this.dispatchAgain = true;
      return;
    }
    this.dispatchAgain = false;
    this.dispatching = this.dispatchAll([...this.byName.values()], this.clock.now())
      .then((dispatched) => {
        const queued = dispatched.filter((d) => d.action === 'started').length;
        if (queued) this.queue.wake(queued);
      })
      .catch((err) => this.log.error({ err: errorMessage(err) }, 'dispatching the events a page recorded failed (the next tick tries again)'))
      .finally(() => {
        this.dispatching = undefined;
        if (this.dispatchAgain) this.dispatchSoon();
      });
  }

  private tickSafely(): Promise<unknown> {
    // One tick at a time; a slow database must not pile them up.
    this.ticking ??= this.tick()
      .catch((err) => this.log.error({ err: errorMessage(err) }, 'daemon tick failed'))
      .finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  private every(ms: number, fn: () => unknown): void {
    const timer = setInterval(fn, ms);
    timer.unref();
    this.timers.push(timer);
  }

  /** Runs currently executing in this daemon. */
  get running(): string[] {
    return [...this.inFlight.keys()];
  }

  /** Resolves when every run this daemon is executing has ended. */
  async idle(): Promise<void> {
    while (this.inFlight.size) await Promise.all(this.inFlight.values());
  }

  private async execute(job: RunJob): Promise<void> {
    if (this.stopping) {
      // Fetched as the daemon began to stop: leave the run queued for another worker.
      await this.requeueUntouched(job.run_id);
      return;
    }
    const { leaseMs } = this.settings;
    const run = await this.claims.claim(job.run_id, this.workerId, this.clock.now(), leaseMs);
    if (!run) return; // another worker has it, or it already ended
    const pipeline = this.byName.get(run.pipeline);
    const log = this.log.child({ run: run.id, pipeline: run.pipeline });
    if (!pipeline) {
      log.error('run belongs to a pipeline this daemon has not loaded');
      await this.store.runs.setStatus(run.id, 'failed', this.clock.now(), `pipeline "${run.pipeline}" is not loaded by the daemon that claimed it`);
      await this.claims.release(run.id, this.workerId);
      return;
    }
    const trigger = pipeline.trigger;
    if (run.trigger === 'schedule' && trigger.kind === 'schedule' && trigger.overlap === 'queue') {
      const earlier = await this.claims.earlierRunning(pipeline.name, run.id, new Date(run.started_at), this.clock.now());
      if (earlier) {
        log.info({ earlier }, 'an earlier run of this pipeline is still going (overlap: queue): this one waits');
        await this.claims.requeue(run.id, this.workerId, 'queued', this.clock.now(), new Date(this.clock.now().getTime() + this.settings.pollMs * 5));
        return;
      }
    }

    const done = this.runClaimed(run, pipeline, log);
    this.inFlight.set(run.id, done);
    try {
      await done;
    } finally {
      this.inFlight.delete(run.id);
    }
  }

  private async runClaimed(claimed: RunRow, pipeline: Pipeline, log: Logger): Promise<void> {
    const runId = claimed.id;
    const { leaseMs } = this.settings;
    const leaseLost = new AbortController();
    const heartbeat = setInterval(() => {
      this.claims
        .renew(runId, this.workerId, this.clock.now(), leaseMs)
        .then((ok) => {
          if (!ok && !leaseLost.signal.aborted) {
            log.error('lost the claim on this run (another daemon took it over): aborting here');
            leaseLost.abort(new Error('the claim on this run was lost'));
          }
        })
        .catch((err) => log.warn({ err: errorMessage(err) }, 'could not renew the run lease'));
    }, Math.max(250, leaseMs / 3));
    let result: RunResult | undefined;
    try {
      result = await executeRun({
        pipeline,
        config: this.runConfig,
        store: this.store,
        resume: runId,
        claimed,
        env: this.options.env,
        clock: this.clock,
        log: this.options.log,
        events: this.events,
        scrub: this.options.scrub,
        stop: this.stopRuns.signal,
        abort: AbortSignal.any([this.abortRuns.signal, leaseLost.signal]),
        rateLimits: this.rateLimits,
        resources: this.resources,
        parkAfterMs: this.settings.parkAfterMs,
        sandboxes: this.sandboxes.map((s) => s.name),
      });
    } catch (err) {
      log.error({ err: errorMessage(err) }, 'run could not be executed');
      await this.store.runs.setStatus(runId, 'failed', this.clock.now(), errorMessage(err)).catch(() => {});
    } finally {
      clearInterval(heartbeat);
    }
    if (leaseLost.signal.aborted) return; // the run is another worker's now
    const now = this.clock.now();
    if (result?.status === 'waiting') {
      const row = await this.store.runs.get(runId);
      const until = row?.waiting_until ? new Date(row.waiting_until) : now;
      await this.claims.requeue(runId, this.workerId, 'waiting', now, until);
      log.info({ until: until.toISOString(), reason: row?.waiting_reason }, 'run parked until its quota window');
    } else if (result?.status === 'interrupted') {
      await this.claims.requeue(runId, this.workerId, 'queued', now);
      log.info('run interrupted by the daemon stopping: queued again');
    } else if (!result) {
      await this.claims.release(runId, this.workerId);
    } // else: the run ended, and its final status update dropped the claim
    this.metrics.runsFinished.inc({ pipeline: pipeline.name, status: result?.status ?? 'failed' });
  }

  /** A job fetched while stopping goes back untouched: a new job, for another daemon or a restart. */
  private async requeueUntouched(runId: string): Promise<void> {
    await this.options.db.kysely.transaction().execute(async (trx) => {
      const row = await trx.selectFrom('flow_runs').select(['status', 'waiting_until']).where('id', '=', runId).executeTakeFirst();
      if (row?.status === 'queued') await this.queue.enqueue(trx, runId);
      else if (row?.status === 'waiting') await this.queue.enqueue(trx, runId, row.waiting_until ? new Date(row.waiting_until) : undefined);
    });
  }

  /**
   * Graceful stop: the HTTP server stops taking requests (answering those in flight), no new
   * jobs are fetched, in-flight runs stop taking items and their in-flight steps finish
   * (aborted after stop_timeout), interrupted runs are queued again, claims released.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    this.log.info({ running: this.running }, 'daemon stopping');
    await this.queue.stopFetching();
    this.stopRuns.abort();
    const hard = setTimeout(() => {
      this.log.warn('in-flight steps did not finish in time: aborting them');
      this.abortRuns.abort(new Error('the daemon is stopping'));
    }, this.settings.stopTimeoutMs);
    await Promise.allSettled([this.idle(), this.http?.close(), this.ticking, this.dispatching]);
    clearTimeout(hard);
    await this.queue.stop();
    await this.webhookDb?.close();
    await this.rateLimits.close();
    if (!this.options.resources) await this.resources.close();
    this.log.info('daemon stopped');
  }

  private buildHttp(): FastifyInstance {
    const bodyLimit = this.options.config.webhooks?.body_limit ?? 1024 * 1024;
    // Requests are logged by us, with context and without secrets; fastify's own logger stays off.
    const trustProxy = this.options.config.daemon?.trust_proxy;
    const app: FastifyInstance = Fastify({ logger: false, bodyLimit, return503OnClosing: true, ...(trustProxy?.length ? { trustProxy: [...trustProxy] } : {}) });
    // Webhooks are verified on the exact bytes received: keep every body raw.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit }, (_req, body, done) => done(null, body));

    for (const route of this.routes) {
      app.post(route.path, async (req, reply) => {
        const started = process.hrtime.bigint();
        let status = 500;
        try {
          const answer = await route.handle({ raw: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0), headers: req.headers, query: req.query as Record<string, unknown> });
          status = answer.status;
          if (answer.body.status === 'started') this.queue.wake(1);
          if (status >= 400) this.log.warn({ route: route.path, status, err: answer.body.error }, 'webhook rejected');
          return reply.code(status).send(answer.body);
        } catch (err) {
          this.log.error({ route: route.path, err: errorMessage(err) }, 'webhook failed');
          return reply.code(500).send({ status: 'rejected', error: 'internal error; the sender should retry' });
        } finally {
          this.metrics.webhookResponses.inc({ route: route.path, status: String(status) });
          this.metrics.webhookSeconds.observe({ route: route.path }, Number(process.hrtime.bigint() - started) / 1e9);
        }
      });
    }
    for (const route of this.routes) {
      app.route({
        method: ['GET', 'PUT', 'PATCH', 'DELETE'],
        url: route.path,
        handler: async (_req, reply) => {
          this.metrics.webhookResponses.inc({ route: route.path, status: '405' });
          return reply.code(405).header('allow', 'POST').send({ status: 'rejected', error: `${route.path} takes POST only` });
        },
      });
    }
    // Answers Node gives before any route (431 for oversized headers, 400 for bad HTTP) are counted too.
    app.server.on('clientError', (err: NodeJS.ErrnoException) => {
      const status = clientErrorStatus(err.code);
      if (status) this.metrics.webhookResponses.inc({ route: '', status });
    });
    // Every answer is served as the type it says, never as a type a browser guesses.
    app.addHook('onSend', async (_req, reply) => {
      reply.header('x-content-type-options', 'nosniff');
    });
    app.setErrorHandler((err: { statusCode?: number; message: string }, req, reply) => {
      const status = err.statusCode && err.statusCode < 500 ? err.statusCode : 500;
      this.metrics.webhookResponses.inc({ route: req.routeOptions.url ?? req.url, status: String(status) });
      return reply.code(status).send({ status: 'rejected', error: err.message });
    });

    for (const page of this.options.pages ?? []) {
      app.route({ method: [...(page.methods ?? ['GET'])], url: page.path, handler: (req, reply) => this.servePage(page, req, reply) });
    }

    app.get('/healthz', async (_req, reply) => {
      if (this.stopping) return reply.code(503).send({ status: 'stopping', worker: this.workerId });
      try {
        await this.options.db.query('SELECT 1');
        return { status: 'ok', worker: this.workerId, running: this.running.length, database: this.options.db.kind, sandboxes: this.sandboxes.map((s) => s.name) };
      } catch (err) {
        return reply.code(503).send({ status: 'database unreachable', error: errorMessage(err), worker: this.workerId });
      }
    });
    app.get('/metrics', async (_req, reply) => {
      const text = await this.metrics.registry.metrics();
      return reply.type(this.metrics.registry.contentType).send(text);
    });
    return app;
  }

  private async servePage(page: Page, req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const context: PageContext = {
      db: this.webhookDb ?? this.options.db,
      config: this.runConfig,
      resources: this.resources,
      clock: this.clock,
      log: this.log,
      counter: (name, help, labelNames) => this.metrics.pageCounter(name, help, labelNames),
      eventsRecorded: () => this.dispatchSoon(),
    };
    const request: PageRequest = {
      method: req.method === 'POST' ? 'POST' : req.method === 'HEAD' ? 'HEAD' : 'GET',
      ip: req.ip,
      params: req.params as Record<string, string>,
      query: req.query as Record<string, string>,
      headers: req.headers,
      body: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0),
    };
    const answer = await page.handle(request, context);
    return reply
      .code(answer.status)
      .headers(answer.headers ?? {})
      .type(answer.type)
      .send(answer.body);
  }
}

/** The status Node's HTTP server (through fastify) answers a request it cannot read with; none when the client went away. */
function clientErrorStatus(code: string | undefined): string | undefined {
  if (code === 'ECONNRESET') return undefined;
  if (code === 'HPE_HEADER_OVERFLOW') return '431';
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return '408';
  return '400';
}

/** A link to a listening address; an address that means every interface is reached as 127.0.0.1 from here. */
function reachableUrl(address: string | AddressInfo | null): string | undefined {
  if (!address || typeof address !== 'object') return undefined;
  const host = address.address === '0.0.0.0' || address.address === '::' ? '127.0.0.1' : address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${host}:${address.port}`;
}

/** Under `sandboxes: never`, the connectors the config names whose secrets are not set: nothing would stand in for them. */
function refusedConnectors(connectors: readonly AnyConnector[], config: EngineConfig): UnsetConnector[] {
  if (config.sandboxes !== 'never') return [];
  return unsetConnectors(connectors, config).filter((c) => config.connectors?.[c.name] !== undefined);
}
