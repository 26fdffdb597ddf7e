import { createHmac } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../engine/clock.ts';
import type { EngineConfig } from '../engine/config.ts';
import { Daemon, type Page, type TickOutcome } from '../engine/daemon/daemon.ts';
import { stripeTestSignature } from '../connectors/stripe/webhooks.ts';
import { firesBetween } from '../engine/daemon/scheduler.ts';
import type { Database } from '../engine/db/connect.ts';
import { executeRun } from '../engine/executor/run.ts';
import { checkPipelineSet } from '../engine/pipeline/load.ts';
import type { Pipeline } from '../engine/pipeline/types.ts';
import { RunStore } from '../engine/store/index.ts';
import { first, testDatabases } from './helpers/db.ts';
import { calls, diagnosticsOf, pipelineFrom, testRegistry } from './helpers/pipeline.ts';
import { eventually } from './helpers/eventually.ts';
import { signedStripeRequest } from './helpers/stripe.ts';

const STRIPE_SECRET = 'whsec_test_secret';
const HMAC_SECRET = 'hmac-test-secret';

const config: EngineConfig = {
  business: { name: 'Test Co', timezone: 'Europe/London' },
  quotas: { office: { caps: { day: 5 }, days: ['mon', 'tue', 'wed', 'thu', 'fri'], window: '09:00-17:00' } },
  budgets: { api: { per: 'calendar_week', limits: { widget_units: 2 } } },
  webhooks: {
    body_limit: 4096,
    verifiers: {
      stripe: { type: 'stripe', secret: STRIPE_SECRET, tolerance: '5m' },
      partner: { type: 'hmac-sha256', secret: HMAC_SECRET, header: 'x-partner-signature', prefix: 'sha256=' },
    },
  },
  daemon: { workers: 2, lease: '30s', poll: '500ms', park_after: '60s' },
};

const load = (yaml: string): Pipeline => pipelineFrom(yaml, testRegistry(), config);

const nightly = (catchup: string, overlap = 'skip') =>
  load(`
name: nightly
trigger: { schedule: { cron: "0 22 * * *", timezone: Europe/London, catchup: ${catchup}, overlap: ${overlap} } }
steps:
  - id: hello
    uses: log
    with: { message: hi }
`);

const paid = load(`
name: paid
trigger:
  webhook:
    path: /hooks/stripe
    verify: stripe
    events: [checkout.session.completed]
    inputs: { session: "\${{ body.data.object.id }}", email: "\${{ body.data.object.customer_email }}" }
inputs:
  session: { type: string }
  email: { type: string }
steps:
  - id: send
    uses: test.send
    key: "\${{ inputs.session }}"
    with: { to: "\${{ inputs.email }}" }
`);

const partner = load(`
name: partner
trigger: { webhook: { verify: partner, event_id: "\${{ headers['x-event-id'] }}" } }
inputs:
  event: { type: object }
steps:
  - id: note
    uses: log
    with: { message: partner event }
`);

const clicked = load(`
name: clicked
trigger:
  event:
    name: email.clicked
    dedupe: { key: "\${{ event.key }}", window: 30d }
    inputs: { prospect: "\${{ event.key }}" }
inputs:
  prospect: { type: string }
steps:
  - id: report
    uses: test.send
    key: "report-\${{ inputs.prospect }}"
    with: { to: "\${{ inputs.prospect }}" }
`);

const clicker = load(`
name: clicker
trigger: { manual: {} }
inputs:
  prospects: { type: array, items: { type: string } }
steps:
  - id: clicks
    uses: event.emit
    foreach: "\${{ inputs.prospects }}"
    key: "click-\${{ item }}-\${{ run.id }}"
    with: { type: email.clicked, key: "\${{ item }}" }
`);

const office = load(`
name: office
trigger: { manual: {} }
steps:
  - id: send
    uses: test.send
    foreach: "\${{ range(0, 3) }}"
    quota: office
    with: { to: "p\${{ item }}" }
`);

const budgeted = load(`
name: budgeted
trigger: { manual: {} }
steps:
  - id: call
    uses: test.send
    foreach: "\${{ ['a', 'b', 'c'] }}"
    item_key: "\${{ item }}"
    budget: api
    with: { to: "\${{ item }}", units: 1, spent: 1 }
`);

const stripeRequest = (event: Record<string, unknown>, now: Date, secret = STRIPE_SECRET) => signedStripeRequest(event, secret, now);

const checkout = (id: string, session = `cs_${id}`) => ({
  id,
  type: 'checkout.session.completed',
  data: { object: { id: session, customer_email: `${id}@example.com`, payment_status: 'paid' } },
});

describe('schedule fire times', () => {
  it('follows the timezone across daylight-saving changes', () => {
    // Sundays 22:00 London: 22:00 UTC in winter, 21:00 UTC in summer.
    const fires = firesBetween('0 22 * * 0', 'Europe/London', new Date('2027-03-20T00:00:00Z'), new Date('2027-04-05T00:00:00Z'), 10);
    expect(fires.map((f) => f.toISOString())).toEqual(['2027-03-21T22:00:00.000Z', '2027-03-28T21:00:00.000Z', '2027-04-04T21:00:00.000Z']);
  });

  it('keeps the newest fires when there are more than the limit', () => {
    const fires = firesBetween('0 * * * *', 'UTC', new Date('2026-11-23T00:00:00Z'), new Date('2026-11-23T10:00:00Z'), 3);
    expect(fires.map((f) => f.toISOString().slice(11, 16))).toEqual(['08:00', '09:00', '10:00']);
  });

  it('refuses two pipelines with one name or one webhook path', () => {
    const a = load(`name: a\ntrigger: { webhook: { path: /hooks/x } }\nsteps: [{ id: s, uses: log, with: { message: m } }]\n`);
    const b = { ...load(`name: b\ntrigger: { webhook: { path: /hooks/x } }\nsteps: [{ id: s, uses: log, with: { message: m } }]\n`), file: 'b.yaml' };
    const c = { ...load(`name: a\ntrigger: { manual: {} }\nsteps: [{ id: s, uses: log, with: { message: m } }]\n`), file: 'c.yaml' };
    expect(checkPipelineSet([a, b, c]).map((d) => `${d.file}: ${d.message}`)).toEqual([
      'b.yaml: webhook path /hooks/x is also used by test.yaml (give each webhook its own path)',
      'c.yaml: pipeline name "a" is also used by test.yaml (give each pipeline its own name)',
    ]);
  });

  it('validates webhook and event triggers', () => {
    expect(diagnosticsOf(`name: x\ntrigger: { webhook: { verify: strpe } }\nsteps: [{ id: a, uses: log, with: { message: m } }]\n`, testRegistry(), config)).toEqual([
      'p.yaml:2:31: trigger.webhook.verify: unknown verifier "strpe" (did you mean "stripe"?)',
    ]);
    expect(diagnosticsOf(`name: x\ntrigger: { event: { name: a.b, dedupe: { key: k, window: soon } } }\nsteps: [{ id: a, uses: log, with: { message: m } }]\n`, testRegistry(), config)).toEqual([
      'p.yaml:2:58: trigger.event.dedupe.window: "soon" is not a duration (write "30d" or "12h")',
    ]);
  });
});

/** A page the daemon serves besides its webhooks, as report links are served. */
const pdfPage: Page = { path: '/files/:name', handle: async () => ({ status: 200, type: 'application/pdf', body: Buffer.from('%PDF-1.7\n') }) };

/** A POST whose headers are larger than Node accepts (16 KiB): answered 431 before any route. */
function postWithHugeHeader(url: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}${path}`, { method: 'POST', headers: { 'x-padding': 'x'.repeat(20_000), 'content-type': 'application/json' } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end('{}');
  });
}

describe.each(testDatabases)('daemon on $name', ({ open }) => {
  let db: Database;
  let store: RunStore;
  let clock: ManualClock;
  let daemon: Daemon;
  const pipelines = [nightly('last'), paid, partner, clicked, clicker, office, budgeted];

  beforeAll(async () => {
    db = await open();
    store = new RunStore(db);
    // Monday 23 Nov 2026, 10:00 London.
    clock = new ManualClock(new Date('2026-11-23T10:00:00Z'));
    daemon = new Daemon({ db, config, pipelines, pages: [pdfPage], verifiers: testRegistry().verifiers, clock, port: 0, loops: false });
    await daemon.start();
  });
  afterAll(async () => {
    await daemon.stop();
    await db.close();
  });

  const runsOf = (pipeline: string) => db.query<{ id: string; status: string; trigger: string; trigger_ref: string | null }>('SELECT id, status, trigger, trigger_ref FROM flow_runs WHERE pipeline = $1 ORDER BY started_at, id', [pipeline]);
  const settled = async (pipeline: string, n: number) =>
    eventually(async () => {
      const runs = await runsOf(pipeline);
      return runs.length >= n && runs.every((r) => !['queued', 'running'].includes(r.status));
    }, `${n} settled runs of ${pipeline}`);
  const post = (path: string, body: string, headers: Record<string, string>) => fetch(`${daemon.url}${path}`, { method: 'POST', body, headers });

  it('fires a schedule once, at its time, and catches up the last missed fire', async () => {
    await daemon.tick(); // first sight of the schedule: starts from now, nothing for the past
    expect(await runsOf('nightly')).toEqual([]);
    clock.advance(12 * 3600_000 + 30_000); // 22:00:30: just past 22:00 London (22:00 UTC in winter)
    await daemon.tick();
    await daemon.tick(); // a second tick (or a second daemon) finds nothing new
    await settled('nightly', 1);
    const [fired] = await runsOf('nightly');
    expect(fired).toMatchObject({ status: 'completed', trigger: 'schedule', trigger_ref: '2026-11-23T22:00:00.000Z' });

    clock.advance(3 * 24 * 3600_000 + 2 * 3600_000); // Friday 00:00: three fires missed while "down"
    await daemon.tick();
    await settled('nightly', 2);
    const runs = await runsOf('nightly');
    expect(runs).toHaveLength(2);
    expect(runs[1]!.trigger_ref).toBe('2026-11-26T22:00:00.000Z'); // catchup: last
  });

  it('starts a run for a signed Stripe event, once; a replay starts nothing', async () => {
    calls.reset();
    const req = stripeRequest(checkout('evt_1'), clock.now());
    const answer = await post('/hooks/stripe', req.body, req.headers);
    expect(answer.status).toBe(200);
    const started = (await answer.json()) as { status: string; run_id: string };
    expect(started.status).toBe('started');

    const replay = await post('/hooks/stripe', req.body, req.headers);
    expect(replay.status).toBe(200);
    expect(await replay.json()).toMatchObject({ status: 'duplicate', run_id: started.run_id });

    await settled('paid', 1);
    const runs = await runsOf('paid');
    expect(runs).toEqual([expect.objectContaining({ id: started.run_id, status: 'completed', trigger: 'webhook', trigger_ref: 'evt_1' })]);
    expect(calls.performed).toEqual(['evt_1@example.com']);
    const run = await store.runs.get(started.run_id);
    expect(run!.inputs).toEqual({ session: 'cs_evt_1', email: 'evt_1@example.com' });
  });

  it('answers 400 to a bad or missing signature, 413 to a large body, and starts nothing', async () => {
    const before = (await runsOf('paid')).length;
    const forged = stripeRequest(checkout('evt_forged'), clock.now(), 'whsec_wrong');
    expect((await post('/hooks/stripe', forged.body, forged.headers)).status).toBe(400);
    const unsigned = await post('/hooks/stripe', JSON.stringify(checkout('evt_2')), { 'content-type': 'application/json' });
    expect(unsigned.status).toBe(400);
    expect(await unsigned.json()).toMatchObject({ error: 'missing Stripe-Signature header' });
    const stale = stripeRequest(checkout('evt_old'), new Date(clock.now().getTime() - 10 * 60_000));
    const staleAnswer = await post('/hooks/stripe', stale.body, stale.headers);
    expect(staleAnswer.status).toBe(400);
    expect(((await staleAnswer.json()) as { error: string }).error).toMatch(/tolerance/i);
    const tampered = stripeRequest(checkout('evt_3'), clock.now());
    expect((await post('/hooks/stripe', tampered.body.replace('evt_3@', 'evil@'), tampered.headers)).status).toBe(400);
    const big = stripeRequest({ ...checkout('evt_big'), padding: 'x'.repeat(5000) }, clock.now());
    expect((await post('/hooks/stripe', big.body, big.headers)).status).toBe(413);
    const other = stripeRequest({ id: 'evt_4', type: 'invoice.paid', data: { object: {} } }, clock.now());
    const ignored = await post('/hooks/stripe', other.body, other.headers);
    expect(ignored.status).toBe(200);
    expect(await ignored.json()).toMatchObject({ status: 'ignored' });
    expect(await runsOf('paid')).toHaveLength(before);
    const { n } = await first(db.query<{ n: number }>("SELECT count(*)::int AS n FROM flow_webhook_events WHERE event_id <> 'evt_1' AND route = '/hooks/stripe'"));
    expect(n).toBe(0);
  });

  it('verifies an HMAC route and takes the event id from a header', async () => {
    const body = JSON.stringify({ kind: 'accepted', profile: 'https://www.linkedin.com/in/someone' });
    const sign = (b: string) => `sha256=${createHmac('sha256', HMAC_SECRET).update(b).digest('hex')}`;
    const ok = await post('/hooks/partner', body, { 'content-type': 'application/json', 'x-partner-signature': sign(body), 'x-event-id': 'pb-1' });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ status: 'started', event_id: 'pb-1' });
    const again = await post('/hooks/partner', body, { 'content-type': 'application/json', 'x-partner-signature': sign(body), 'x-event-id': 'pb-1' });
    expect(await again.json()).toMatchObject({ status: 'duplicate' });
    // The signature is over the raw bytes, whatever the content type says.
    const plain = await post('/hooks/partner', body, { 'x-partner-signature': sign(body), 'x-event-id': 'pb-1' });
    expect(await plain.json()).toMatchObject({ status: 'duplicate' });
    const bad = await post('/hooks/partner', body, { 'content-type': 'application/json', 'x-partner-signature': sign(`${body} `), 'x-event-id': 'pb-2' });
    expect(bad.status).toBe(400);
    await settled('partner', 1);
    expect(await runsOf('partner')).toHaveLength(1);
  });

  it('starts event-triggered runs once per key within the dedupe window', async () => {
    calls.reset();
    await executeRun({ pipeline: clicker, config, store, clock, inputs: { prospects: ['acme', 'globex', 'acme'] } });
    await daemon.tick();
    await settled('clicked', 2);
    expect((await runsOf('clicked')).map((r) => r.status)).toEqual(['completed', 'completed']);
    expect(calls.performed.sort()).toEqual(['acme', 'globex']);
    await daemon.tick(); // dispatched events are not handed over again
    expect(await runsOf('clicked')).toHaveLength(2);

    clock.advance(31 * 24 * 3600_000); // past the window: a new click starts a new run
    await executeRun({ pipeline: clicker, config, store, clock, inputs: { prospects: ['acme'] } });
    await daemon.tick();
    await settled('clicked', 3);
    expect(await runsOf('clicked')).toHaveLength(3);
  });

  it('parks a run that must wait for its quota window, and queues it for then', async () => {
    // Sunday 27 Dec by now: the office quota is closed until Monday 09:00 London.
    const run = await db.kysely.transaction().execute((trx) => daemon.claims.enqueueNew(trx, { pipeline: office, inputs: {}, trigger: 'manual', ref: null, now: clock.now() }));
    daemon.queue.wake(1);
    await eventually(async () => {
      const row = await store.runs.get(run);
      return row?.status === 'waiting' && row.claimed_by === null; // parked, then handed back
    }, 'the run to park');
    const row = (await store.runs.get(run))!;
    expect(row.waiting_reason).toMatch(/outside the window of quota office/);
    expect(row.claimed_by).toBeNull();
    const job = await first(db.query<{ start_after: Date; state: string }>("SELECT start_after, state FROM pgboss.job WHERE data->>'run_id' = $1 ORDER BY created_on DESC LIMIT 1", [run]));
    expect(job.state).toBe('created');
    expect(new Date(job.start_after).toISOString()).toBe(new Date(row.waiting_until!).toISOString());
    expect(daemon.running).toEqual([]); // no worker is held
  });

  it('parks a run whose budget is spent until the next period, and queues it for then', async () => {
    const run = await db.kysely.transaction().execute((trx) => daemon.claims.enqueueNew(trx, { pipeline: budgeted, inputs: {}, trigger: 'manual', ref: null, now: clock.now() }));
    daemon.queue.wake(1);
    await eventually(async () => {
      const row = await store.runs.get(run);
      return row?.status === 'waiting' && row.claimed_by === null;
    }, 'the run to wait for its budget');
    const row = (await store.runs.get(run))!;
    expect(row.waiting_reason).toMatch(/^budget api reached: 2 of 2 widget_units spent this calendar week, and the next call may take 1; resumes /);
    const job = await first(db.query<{ start_after: Date; state: string }>("SELECT start_after, state FROM pgboss.job WHERE data->>'run_id' = $1 ORDER BY created_on DESC LIMIT 1", [run]));
    expect(job.state).toBe('created');
    expect(new Date(job.start_after).toISOString()).toBe(new Date(row.waiting_until!).toISOString());
    expect(new Date(row.waiting_until!).getUTCDay()).toBe(1); // Monday 00:00 London
  });

  it('takes over a run whose lease ran out and resumes it without repeating effects', async () => {
    calls.reset();
    const runId = await db.kysely.transaction().execute((trx) =>
      daemon.claims.enqueueNew(trx, { pipeline: paid, inputs: { session: 'cs_lease', email: 'lease@example.com' }, trigger: 'manual', ref: null, now: clock.now() }),
    );
    // Another daemon claimed it and died: its lease is in the past.
    await db.query("UPDATE flow_runs SET status = 'running', claimed_by = 'dead:1', lease_until = $2 WHERE id = $1", [runId, new Date(clock.now().getTime() - 1000)]);
    await daemon.tick();
    await eventually(async () => (await store.runs.get(runId))?.status === 'completed', 'the run to be taken over');
    expect(calls.performed).toEqual(['lease@example.com']);
    expect((await store.runs.get(runId))!.claimed_by).toBeNull();
  });

  it('answers a GET on a webhook route 405 with the methods it allows', async () => {
    const answer = await fetch(`${daemon.url}/hooks/stripe`);
    expect(answer.status).toBe(405);
    expect(answer.headers.get('allow')).toBe('POST');
    const metrics = await (await fetch(`${daemon.url}/metrics`)).text();
    expect(metrics).toMatch(/flows_webhook_responses_total\{route="\/hooks\/stripe",status="405"\} 1/);
  });

  it('answers a correctly signed body that is not JSON 400 "the body is not JSON"', async () => {
    const body = 'id=evt_form&type=checkout.session.completed';
    const answer = await post('/hooks/stripe', body, { 'content-type': 'application/x-www-form-urlencoded', 'stripe-signature': stripeTestSignature(body, STRIPE_SECRET, clock.now()) });
    expect(answer.status).toBe(400);
    expect(await answer.json()).toMatchObject({ status: 'rejected', error: 'the body is not JSON' });
    const forged = await post('/hooks/stripe', body, { 'content-type': 'application/x-www-form-urlencoded', 'stripe-signature': stripeTestSignature(body, 'whsec_wrong', clock.now()) });
    expect(((await forged.json()) as { error: string }).error).toMatch(/^bad Stripe signature/);
  });

  it('counts answers given before any route, like 431 for oversized headers', async () => {
    expect(await postWithHugeHeader(daemon.url!, '/hooks/stripe')).toBe(431);
    const metrics = await (await fetch(`${daemon.url}/metrics`)).text();
    expect(metrics).toMatch(/flows_webhook_responses_total\{route="",status="431"\} 1/);
  });

  it('tells browsers not to guess content types', async () => {
    const pdf = await fetch(`${daemon.url}/files/report.pdf`);
    expect(pdf.status).toBe(200);
    expect(pdf.headers.get('content-type')).toBe('application/pdf');
    expect(pdf.headers.get('x-content-type-options')).toBe('nosniff');
    expect((await fetch(`${daemon.url}/healthz`)).headers.get('x-content-type-options')).toBe('nosniff');
  });

  it('serves health and Prometheus metrics', async () => {
    const health = await fetch(`${daemon.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', worker: daemon.workerId });
    const metrics = await (await fetch(`${daemon.url}/metrics`)).text();
    expect(metrics).toMatch(/flows_runs\{pipeline="paid",status="completed"\} [1-9]/);
    expect(metrics).toMatch(/flows_webhook_responses_total\{route="\/hooks\/stripe",status="400"\} [4-9]/);
    expect(metrics).toMatch(/flows_webhook_responses_total\{route="\/hooks\/stripe",status="413"\} 1/);
    expect(metrics).toMatch(/flows_effects\{kind="message",status="done"\} [1-9]/);
    expect(metrics).toMatch(/flows_quota_cap\{quota="office",key="",period="day"\} 5/);
    expect(metrics).toMatch(/flows_queue_depth \d+/);
    expect(metrics).toMatch(/flows_webhook_duration_seconds_bucket/);
  });
});

/** A page that records email.clicked for its key, as the landing page's button does, and says so. */
const askPage: Page = {
  path: '/ask/:key',
  methods: ['POST'],
  async handle(request, context) {
    await context.db.query("INSERT INTO flow_events (type, key, payload, occurred_at) VALUES ('email.clicked', $1, '{}', $2)", [request.params.key, context.clock.now()]);
    context.eventsRecorded();
    return { status: 303, type: 'text/plain', body: '', headers: { location: '/' } };
  },
};

describe.each(testDatabases)('daemon with its loops on $name', ({ open }) => {
  let db: Database;
  let daemon: Daemon;
  const ticked: TickOutcome[] = [];

  beforeAll(async () => {
    db = await open();
    daemon = new Daemon({ db, config, pipelines: [clicked], pages: [askPage], verifiers: testRegistry().verifiers, port: 0 });
    // Every tick's outcome is kept, so the test knows who dispatched what.
    const tick = daemon.tick.bind(daemon);
    daemon.tick = async () => {
      const outcome = await tick();
      ticked.push(outcome);
      return outcome;
    };
    await daemon.start();
    await eventually(() => ticked.length > 0, 'the first tick');
  });
  afterAll(async () => {
    await daemon?.stop();
    await db?.close();
  });

  it("hands an event a page recorded to its pipeline at once, not at the loop's next tick", async () => {
    const answer = await fetch(`${daemon.url}/ask/prospect-now`, { method: 'POST', redirect: 'manual' });
    expect(answer.status).toBe(303);
    const runs = () => db.query<{ id: string; status: string }>("SELECT id, status FROM flow_runs WHERE pipeline = 'clicked'");
    await eventually(async () => (await runs()).some((r) => r.status === 'completed'), 'the run of the click to complete');
    expect(await runs()).toHaveLength(1);
    // The run was not started by a tick: the page's own dispatch took the event.
    expect(ticked.flatMap((t) => t.dispatched)).toEqual([]);
  });
});
