import type { Command } from 'commander';
import { dirname, join, resolve } from 'node:path';
import { createHmac, randomBytes } from 'node:crypto';
import { systemClock } from '../../clock.ts';
import { Daemon, type Page } from '../../daemon/daemon.ts';
import { firesBetween } from '../../daemon/scheduler.ts';
import { type Database, openDatabase } from '../../db/connect.ts';
import { RunEvents } from '../../events.ts';
import { executeRun } from '../../executor/run.ts';
import { resolveInputs } from '../../pipeline/inputs.ts';
import type { Pipeline } from '../../pipeline/types.ts';
import { RunStore } from '../../store/index.ts';
import { renderRunSummary } from '../../summary.ts';
import { table, usd } from '../../format.ts';
import { showProgress } from '../progress.ts';
import type { Project } from '../project.ts';
import { demoEmail } from './demo-email.ts';
import { demoLinkedIn, openWeekDatabase, type StartLinkedIn } from './demo-linkedin.ts';
import { exitCodeOf } from './run.ts';
import type { Wrap } from './types.ts';

/** The sandboxes the demo starts; given by the composition root so the engine names no connector. */
export interface DemoDeps {
  startApi(): Promise<{ url: string; close(): Promise<void> }>;
  /** The daemon's pages (report links), for the payment part of the demo. */
  pages?: readonly Page[];
  /** Why reports cannot be made on this machine (no Chromium), if they cannot. */
  reportsUnavailable?(): string | undefined;
  /** The Stripe-Signature header Stripe would send with `payload` (test mode), for the payment part. */
  signStripe?(payload: string, secret: string, at: Date): string;
  /** LinkedIn simulated (the Phantombuster sandbox) on the given clock, for the LinkedIn week. */
  startLinkedIn?: StartLinkedIn;
}

/** More than one demo makes: the listing of a demo's runs is never cut short. */
const RUNS_LISTED = 10_000;

export function demoCommand(program: Command, project: (defaults?: { logLevel?: string }) => Project, wrap: Wrap, deps?: DemoDeps): void {
  program
    .command('demo')
    .description('Run the sample pipeline, the daemon, the weekly run, an email day and a LinkedIn week end to end on the embedded database and local sandboxes (no keys needed)')
    .option('--data <folder>', 'embedded database folder for the demo', join('.flows', 'demo', 'db'))
    .option('--examples <folder>', "the demo's own pipelines (the business ones stay in --dir)", 'examples')
    .option('--json', 'tell the story on stderr and print, on stdout, one JSON object: every run the demo made in both its databases (newest first, as flows runs --json prints them), where to look, and the exit code')
    .action(
      wrap(async (opts: { data: string; examples: string; json?: boolean }) => {
        if (!deps) throw new Error('this build has no demo sandboxes');
        // The demo tells its own story on stdout; logs only for what went wrong (or --log-level).
        const p = project({ logLevel: 'warn' });
        const say = (s = '') => (opts.json ? process.stderr : process.stdout).write(`${s}\n`);
        const example = (name: string) => p.pipeline(join(opts.examples, `${name}.yaml`));
        const pipeline = example('demo');
        say(`1. Validated ${p.display(pipeline.file)} and ${p.display(p.configFile)}: ${pipeline.steps.length} steps, all expressions and references resolve.`);
        const api = await deps.startApi();
        const db = await openDatabase({ dataDir: resolve(opts.data), migrations: p.registry.migrations });
        // The LinkedIn week's own database is made meanwhile: the parts before it mostly wait on sandboxes.
        const weekData = join(dirname(opts.data), 'linkedin-week');
        const linkedinWeek = deps.startLinkedIn && !deps.reportsUnavailable?.() ? openWeekDatabase(p, weekData) : undefined;
        linkedinWeek?.catch(() => {}); // awaited, and so reported, by the LinkedIn week
        // The database keeps earlier demos' runs; --json lists this one's (some are dated in a simulated week).
        const before = new Set((await db.query<{ id: string }>('SELECT id FROM flow_runs')).map((r) => r.id));
        say(`2. Started the search-visibility sandbox at ${api.url}; database: ${db.description}.`);
        try {
          const store = new RunStore(db, p.scrub);
          const inputs = resolveInputs(pipeline, { api_url: api.url });
          const base = { pipeline, config: p.config, store, inputs, env: p.env, log: p.log, scrub: p.scrub };

          say('3. The run:\n');
          const events = new RunEvents();
          const stopProgress = showProgress(events, p.log);
          const real = await executeRun({ ...base, events });
          stopProgress();
          say(indent(renderRunSummary(real)));

          say('\n4. A dry run of the next run: reads happen (the API lookups), effects are planned, not performed.');
          say('   categorise is an effect too, so notify, which goes over the rows categorise returns, has none to go over.\n');
          const dry = await executeRun({ ...base, dryRun: true, outDir: join('.flows', 'demo', 'dry-run') });
          say(indent(renderRunSummary(dry)));

          const rows = await db.query<{ domain: string; company_name: string; category: string; visibility: number; trend: string }>(
            `SELECT p.domain, p.company_name, p.category, (i.data->>'visibility')::float AS visibility, i.data->>'trend' AS trend
               FROM prospects p JOIN prospect_intelligence i ON i.domain = p.domain AND i.source = 'demo_api'
              WHERE p.source = 'demo' ORDER BY p.domain`,
          );
          say('\n5. What the run stored (prospects joined with prospect_intelligence):\n');
          say(indent(table(['domain', 'company', 'visibility', 'trend', 'category'], rows.map((r) => [r.domain, r.company_name, r.visibility, r.trend, r.category]))));
          say('\n6. Run it again: the upserts converge and the events are not emitted twice (their keys span runs).');
          const again = await executeRun({ ...base });
          const notify = again.steps.find((s) => s.id === 'notify');
          say(`   second run ${again.run_id}: ${again.status}; notify effects performed this time: ${notify?.effects ?? 0}`);
          await demoDaemon(p, db, say, deps, example);
          await demoWeekly(p, db, say, deps.reportsUnavailable?.());
          await demoEmail(p, db, say, deps.pages ?? [], deps.reportsUnavailable?.());
          await demoLinkedIn(p, db, say, deps.startLinkedIn && linkedinWeek && { start: deps.startLinkedIn, db: linkedinWeek, dataDir: weekData }, deps.reportsUnavailable?.());
          say(`\nInspect: npx flows runs --db ${opts.data}    npx flows show ${real.run_id} --db ${opts.data}`);
          say(`Dry-run artifacts: ${dry.artifacts}/`);
          const exitCode = exitCodeOf(real);
          if (opts.json) {
            const week = await linkedinWeek?.catch(() => undefined);
            // The week's database is made afresh each time: all its runs are this demo's.
            const summary = {
              exit_code: exitCode,
              runs: (await store.runs.list({ limit: RUNS_LISTED })).filter((r) => !before.has(r.id)),
              linkedin_week: week ? { database: weekData, runs: await new RunStore(week).runs.list({ limit: RUNS_LISTED }) } : null,
              database: opts.data,
              dry_run_artifacts: dry.artifacts,
            };
            process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
          }
          return exitCode;
        } finally {
          await api.close();
          await db.close();
          await (await linkedinWeek?.catch(() => undefined))?.close();
        }
      }),
    );
}

/**
 * The daemon on the demo's database, in this process, on a free port: signed webhooks
 * (accepted, replayed, forged), an event that starts another pipeline once per domain, and
 * a schedule's missed fire caught up.
 */
async function demoDaemon(project: Project, db: Database, say: (s?: string) => void, deps: DemoDeps, example: (name: string) => Pipeline): Promise<void> {
  const pages = deps.pages ?? [];
  const noPayment = deps.reportsUnavailable?.() ?? (deps.signStripe ? undefined : 'this build has no Stripe connector to sign the event');
  // Secrets for the demo's verifiers, unless the environment sets them.
  const p = project.withEnv({ DEMO_WEBHOOK_SECRET: randomBytes(16).toString('hex'), STRIPE_WEBHOOK_SECRET: `whsec_${randomBytes(16).toString('hex')}` });
  const secret = p.config.webhooks!.verifiers!['demo-signature']!.secret;
  const pipelines = [...['demo-signup', 'demo-welcome', 'demo-nightly'].map(example), p.pipeline('paid-report')];
  const clock = systemClock;
  const store = new RunStore(db, p.scrub);
  // The demo fires the schedule from "now" each time it runs.
  await db.query("DELETE FROM flow_schedules WHERE pipeline = 'demo-nightly'");
  // Quiet: the demo forges a signature on purpose, and says so itself.
  // Report links in emails point at this daemon (the config names no public_url).
  const daemon = new Daemon({ db, config: p.config, pipelines, pages, verifiers: p.registry.verifiers, connectors: p.registry.connectors.values(), projectDir: p.dir, clock, port: 0, loops: false, log: p.log.child({}, { level: 'error' }), env: p.env, scrub: p.scrub });
  await daemon.start();
  const finished = async (runId: string) => {
    for (let i = 0; i < 600; i++) {
      const run = await store.runs.get(runId);
      if (run && !['queued', 'running'].includes(run.status)) return run.status;
      await new Promise((r) => setTimeout(r, 50));
    }
    return 'still running';
  };
  try {
    say(`\n7. The daemon (scheduler, workers, webhook server) in this process at ${daemon.url}, same database:`);
    const domain = `new-signup-${randomBytes(2).toString('hex')}.example`;
    const signup = (id: string, company: string) => JSON.stringify({ signup_id: id, domain, company, email: `owner@${domain}` });
    const send = async (body: string, signature = `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`) => {
      const res = await fetch(`${daemon.url}/hooks/demo-signup`, { method: 'POST', body, headers: { 'content-type': 'application/json', 'x-demo-signature': signature } });
      return { status: res.status, body: (await res.json()) as { status: string; run_id?: string; error?: string } };
    };
    const id = `su_${randomBytes(4).toString('hex')}`;
    const first = await send(signup(id, 'Fresh Signup <Ltd>'));
    say(`   POST /hooks/demo-signup (signed):         ${first.status} ${first.body.status}, run ${first.body.run_id}`);
    const replay = await send(signup(id, 'Fresh Signup <Ltd>'));
    say(`   the same event again (a replay):          ${replay.status} ${replay.body.status}, run ${replay.body.run_id} (nothing new)`);
    const forged = await send(signup(`${id}x`, 'Forged'), 'sha256=00');
    say(`   a forged signature:                       ${forged.status} ${forged.body.error}`);
    say(`   run ${first.body.run_id}: ${await finished(first.body.run_id!)} (stored ${domain}, recorded event prospect.signed_up)`);

    const welcome = (await daemon.tick()).dispatched.find((d) => d.pipeline === 'demo-welcome' && d.action === 'started');
    say(`   the event started demo-welcome:           run ${welcome?.runId}: ${welcome?.runId ? await finished(welcome.runId) : 'none'}`);
    const second = await send(signup(`${id}-2`, 'Fresh Signup Ltd'));
    await finished(second.body.run_id!);
    await daemon.tick();
    const welcomes = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM flow_runs WHERE pipeline = 'demo-welcome' AND inputs->>'domain' = $1", [domain]);
    say(`   a second signup for ${domain}: run ${second.body.run_id}; demo-welcome runs for it: ${welcomes[0]?.n} (dedupe: once per domain in 30 days)`);

    // A schedule seen for the first time starts from now; as if no daemon had run at its last
    // fire time, that fire is caught up (catchup: last) once, now, on the real clock.
    await daemon.tick();
    const nightlyTrigger = pipelines.find((x) => x.name === 'demo-nightly')!.trigger as Extract<Pipeline['trigger'], { kind: 'schedule' }>;
    const missed = firesBetween(nightlyTrigger.cron, nightlyTrigger.timezone, new Date(clock.now().getTime() - 8 * 86_400_000), clock.now(), 10).at(-1)!;
    await db.query("UPDATE flow_schedules SET last_fire_at = $1 WHERE pipeline = 'demo-nightly'", [new Date(missed.getTime() - 60_000)]);
    const nightly = (await daemon.tick()).fired.find((f) => f.action === 'started');
    say(`   a missed fire (${missed.toISOString()}, no daemon ran then) caught up once: demo-nightly run ${nightly?.runId}: ${nightly?.runId ? await finished(nightly.runId) : 'none'}`);

    if (noPayment || !deps.signStripe) say(`\n8. A Stripe payment: skipped, ${noPayment}.`);
    else await demoPayment(daemon, db, domain, (payload) => deps.signStripe!(payload, p.config.webhooks!.verifiers!.stripe!.secret, clock.now()), finished, say);

    const metrics = await (await fetch(`${daemon.url}/metrics`)).text();
    const shown = metrics.split('\n').filter((l) => /^flows_(runs\{pipeline="(demo-|paid-)|webhook_responses_total|queue_depth)/.test(l));
    say(`   GET /metrics (Prometheus), a few lines:\n${shown.map((l) => `     ${l}`).join('\n')}`);
  } finally {
    await daemon.stop();
  }
}

/**
 * A Stripe payment by the prospect who signed up: the report is made at once and emailed,
 * the payment recorded with its attribution; a replay makes nothing; a payment with no
 * domain needs a person.
 */
async function demoPayment(
  daemon: Daemon,
  db: Database,
  domain: string,
  /** Signs at the daemon's time: the demo moved its clock to the schedule's fire. */
  sign: (payload: string) => string,
  finished: (runId: string) => Promise<string>,
  say: (s?: string) => void,
): Promise<void> {
  const [prospect] = await db.query<{ id: string }>('SELECT id FROM prospects WHERE domain = $1', [domain]);
  const sessionId = `cs_demo_${randomBytes(6).toString('hex')}`;
  const event = (id: string, metadata: Record<string, string>, session = sessionId) => ({
    id,
    object: 'event',
    type: 'checkout.session.completed',
    data: {
      object: { id: session, object: 'checkout.session', amount_total: 4900, currency: 'usd', payment_status: 'paid', customer_details: { email: `owner@${domain}`, name: 'Demo Owner' }, metadata, custom_fields: [] },
    },
  });
  const post = async (body: unknown) => {
    const text = JSON.stringify(body);
    const header = sign(text);
    const res = await fetch(`${daemon.url}/hooks/stripe`, { method: 'POST', body: text, headers: { 'content-type': 'application/json', 'stripe-signature': header } });
    const answer = (await res.json()) as { status: string; run_id?: string; error?: string };
    if (res.status !== 200) throw new Error(`the daemon refused the demo's Stripe event: ${res.status} ${answer.error ?? ''}`);
    return answer;
  };
  say(`\n8. A Stripe payment by ${domain} (test-signed checkout.session.completed, attribution in its metadata):`);
  const started = performance.now();
  const paid = await post(event(`evt_${randomBytes(6).toString('hex')}`, { prospect_id: prospect?.id ?? '', channel: 'email', campaign: 'demo-week', variant: 'B' }));
  const status = await finished(paid.run_id!);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const [report] = await db.query<{ token: string; pdf_path: string; cost: unknown; cost_usd: string }>(
    'SELECT r.token, r.pdf_path, r.cost, r.cost_usd FROM generated_reports r JOIN payments p ON p.report_id = r.id WHERE p.session_id = $1',
    [sessionId],
  );
  say(`   run ${paid.run_id}: ${status} in ${seconds}s: SEMrush and SpyFu data, Claude analysis, HTML and PDF, email with the PDF attached`);
  if (report) {
    const cost = (typeof report.cost === 'string' ? JSON.parse(report.cost) : report.cost) as Record<string, number>;
    const page = await fetch(`${daemon.url}/reports/${report.token}`);
    const pdf = await fetch(`${daemon.url}/reports/${report.token}.pdf`);
    const unknown = await fetch(`${daemon.url}/reports/${'x'.repeat(32)}`);
    say(`   report: ${daemon.url}/reports/${report.token} (${page.status}, HTML) and .pdf (${pdf.status}, ${(Number(pdf.headers.get('content-length')) / 1024).toFixed(0)} KiB); an unknown token: ${unknown.status}`);
    say(`   PDF on disk: .flows/reports/${report.pdf_path}; the email as the SMTP sandbox took it: .flows/outbox/`);
    say(`   cost: ${cost.semrush_units} SEMrush units, ${cost.spyfu_rows} SpyFu rows, ${cost.claude_input_tokens}+${cost.claude_output_tokens} Claude tokens = ${usd(Number(report.cost_usd))}`);
  }
  const [payment] = await db.query<{ channel: string; campaign: string; variant: string; amount: string }>('SELECT channel, campaign, variant, amount FROM payments WHERE session_id = $1', [sessionId]);
  say(`   payments row: $${(Number(payment?.amount ?? 0) / 100).toFixed(2)}, channel ${payment?.channel}, campaign ${payment?.campaign}, variant ${payment?.variant}; event "paid" recorded`);
  const replay = await post(event(`evt_${randomBytes(6).toString('hex')}`, {}));
  say(`   another event for the same session: ${replay.status} (nothing new)`);
  const orphan = await post(event(`evt_${randomBytes(6).toString('hex')}`, {}, `cs_demo_${randomBytes(6).toString('hex')}`));
  const orphanStatus = await finished(orphan.run_id!);
  say(`   a payment naming no prospect and no domain: Stripe got 200; run ${orphan.run_id}: ${orphanStatus} (flows runs --status needs_attention)`);
}

/**
 * The Sunday-night pipeline on the sample sources: a dry run that says what the week would
 * cost, then the run: import, enrichment, categories, the LinkedIn week and its reports,
 * analysed in one Claude message batch (all on sandboxes).
 */
async function demoWeekly(p: Project, db: Database, say: (s?: string) => void, noReports: string | undefined): Promise<void> {
  if (noReports) {
    say(`\n9. The weekly run (weekly-enrich): skipped, ${noReports}.`);
    return;
  }
  const pipeline = p.pipeline('weekly-enrich');
  // Quiet: the connectors' "no key, sandbox answers" warnings are what the demo is about.
  const log = p.log.child({}, { level: 'error' });
  const base = { pipeline, config: p.config, store: new RunStore(db, p.scrub), env: p.env, log, scrub: p.scrub, projectDir: p.dir };
  say(`\n9. The weekly run (weekly-enrich, Sundays 22:00 ${p.config.business?.timezone ?? 'UTC'}) on the sources in the config (${p.display(join(p.dir, 'data'))}):`);
  const dry = await executeRun({ ...base, dryRun: true, outDir: join('.flows', 'demo', 'weekly-dry-run') });
  say(`   dry run ${dry.run_id}: ${dry.status}; it would spend ${Object.entries(dry.cost.units).map(([u, n]) => `${n} ${u}`).join(', ') || 'nothing'} (${usd(dry.cost.usd)})`);
  for (const n of dry.notes) say(`     ${n.step}: ${n.text}`);
  const started = performance.now();
  const real = await executeRun(base);
  // Say why it took as long as it did, and what the money went on, only where it applies.
  const units = real.cost.units;
  const paced = units.semrush_units || units.spyfu_rows ? ' (paced by the SEMrush and SpyFu rate limits)' : '';
  const batch = units.claude_batch_input_tokens ? ' (Claude batch at half price)' : '';
  say(`   run ${real.run_id}: ${real.status} in ${((performance.now() - started) / 1000).toFixed(1)}s${paced}, ${usd(real.cost.usd)} spent${batch}`);
  for (const n of real.notes) say(`     ${n.step}: ${n.text}`);
  for (const s of real.skipped) say(`     skipped ${s.n} × ${s.reason}`);
  // Every prospect enriched so far has a teaser category (the demo's own six included).
  const categories = await db.query<{ category: string; n: number }>('SELECT category, count(*)::int AS n FROM prospects WHERE category IS NOT NULL GROUP BY category ORDER BY n DESC, category');
  const categorised = categories.reduce((sum, c) => sum + c.n, 0);
  say(`   teaser categories of the ${categorised} prospects with search data: ${categories.map((c) => `${c.category} ${c.n}`).join(', ')}`);
  const week = await db.query<{ week: string; n: number; reports: number }>(
    'SELECT week, count(*)::int AS n, count(report_id)::int AS reports FROM linkedin_selections GROUP BY week ORDER BY week DESC LIMIT 1',
  );
  if (week[0]) say(`   LinkedIn ${week[0].week}: ${week[0].n} prospects chosen, ${week[0].reports} reports ready for their acceptance (flows runs, flows show ${real.run_id})`);
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => (l ? `   ${l}` : l))
    .join('\n');
}
