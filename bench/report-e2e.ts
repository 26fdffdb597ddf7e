/**
 * Payment to delivered email: the real daemon with the shipped pipelines/paid-report.yaml
 * and pipelines/flows.config.yaml (as test/paid-report.test.ts runs them), its SEMrush,
 * SpyFu and Claude clients pointed at sandboxes that answer after realistic latencies, and
 * the SMTP sandbox. One Stripe test-signed checkout.session.completed is posted, and the
 * time runs from the POST to the email being in the SMTP sandbox.
 *
 * The floor is what the sandboxes make the run wait for on its critical path: the SEMrush
 * and SpyFu calls run at once (max of the two latencies), then Claude. The daemon is in its
 * steady state: resources made and the browser warm before the POST.
 */
import { businessMigrations } from '../steps/tables.ts';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkoutSession, signedStripeRequest, stripeEvent } from '../test/helpers/stripe.ts';
import { Daemon } from '../engine/daemon/daemon.ts';
import { openDatabase } from '../engine/db/connect.ts';
import { RunEvents } from '../engine/events.ts';
import { loadPipeline } from '../engine/pipeline/load.ts';
import { builtinPages, createRegistry } from '../steps/index.ts';
import { browserConnector } from '../connectors/browser/connector.ts';
import { startSmtpSandbox } from '../connectors/smtp/sandbox.ts';
import { benchResources, injectedWaits, type Latencies, PIPELINES_DIR, shippedConfig, startConnectors } from './report-kit.ts';

const SECRET = 'whsec_bench_report';

export interface E2eResult {
  latencies: Latencies;
  /** POST to the email in the SMTP sandbox. */
  totalMs: number;
  /** max(SEMrush, SpyFu) + Claude: the injected waits on the critical path. */
  floorMs: number;
  /** The floor with the config's rate limits, which space calls to one service minTime apart. */
  rateLimitedFloorMs: number;
  webhookAnswerMs: number;
  /** POST to the run starting (webhook, queue, claim). */
  runStartMs: number;
  /** Each step's start and duration, ms from the POST. */
  steps: { id: string; startMs: number; ms: number; status: string }[];
  runStatus: string;
}

export async function paymentToEmail(latencies: Latencies, say: (s: string) => void): Promise<E2eResult> {
  const state = mkdtempSync(join(tmpdir(), 'flows-bench-e2e-'));
  const env = { STRIPE_WEBHOOK_SECRET: SECRET };
  // The email lands in an SMTP sandbox of our own, set as the configured server.
  const sandbox = await startSmtpSandbox();
  const shipped = shippedConfig(state, env);
  const config = { ...shipped, public_url: 'https://reports.example.test', connectors: { ...shipped.connectors, smtp: { host: sandbox.host, port: sandbox.port } } };
  const file = join(PIPELINES_DIR, 'paid-report.yaml');
  const registry = createRegistry();
  const { pipeline, diagnostics } = loadPipeline(readFileSync(file, 'utf8'), file, { registry, config });
  if (!pipeline) throw new Error(`${file}: ${diagnostics.map((d) => d.message).join('; ')}`);

  const db = await openDatabase({ dataDir: 'memory://', migrations: businessMigrations });
  const connectors = await startConnectors(config, latencies);
  const resources = benchResources(config, env, state, connectors);
  const events = new RunEvents();
  const daemon = new Daemon({ db, config, pipelines: [pipeline], pages: builtinPages, verifiers: registry.verifiers, resources, env, port: 0, events });
  try {
    await daemon.start();
    await (await resources.use(browserConnector)).pdf('<p>warm-up</p>');

    const marks: { id: string; start?: number; end?: number; status?: string }[] = [];
    let runStart = NaN;
    let runStatus = 'unknown';
    let t0 = NaN;
    const at = () => performance.now() - t0;
    events.on('run:start', () => (runStart = at()));
    events.on('step:start', (e) => marks.push({ id: e.stepId, start: at() }));
    events.on('step:finish', (e) => Object.assign(marks.findLast((m) => m.id === e.stepId) ?? {}, { end: at(), status: e.status }));
    const finished = events.once('run:finish').then((e) => (runStatus = e.status));

    const domain = 'e2e-widgets.com';
    const session = checkoutSession('cs_bench_e2e_1', { customer_details: { email: `founder@${domain}`, name: 'Bench Buyer' }, metadata: { domain, channel: 'bench' } });
    const request = signedStripeRequest(stripeEvent('evt_bench_e2e_1', 'checkout.session.completed', session), SECRET);

    say(`  e2e: posting the payment; the email should arrive after about ${((Math.max(latencies.semrushMs, latencies.spyfuMs) + latencies.claudeMs) / 1000).toFixed(1)} s ...`);
    t0 = performance.now();
    const answer = await fetch(`${daemon.url}/hooks/stripe`, { method: 'POST', body: request.body, headers: request.headers });
    const answered = (await answer.json()) as { status: string };
    const webhookAnswerMs = at();
    if (answer.status !== 200 || answered.status !== 'started') throw new Error(`the webhook answered ${answer.status} ${JSON.stringify(answered)}`);
    const timeoutMs = latencies.claudeMs + 120_000;
    await sandbox.waitFor(1, timeoutMs);
    const totalMs = at();
    // The run ends with one more step (event.emit); bounded, so a stuck run cannot hang the bench.
    const bound = AbortSignal.timeout(10_000);
    await Promise.race([finished, new Promise((resolve) => bound.addEventListener('abort', resolve))]);

    return {
      latencies,
      totalMs,
      ...injectedWaits(config, latencies),
      webhookAnswerMs,
      runStartMs: runStart,
      steps: marks.map((m) => ({ id: m.id, startMs: m.start ?? NaN, ms: (m.end ?? NaN) - (m.start ?? NaN), status: m.status ?? 'unfinished' })),
      runStatus,
    };
  } finally {
    await daemon.stop();
    await resources.close();
    await connectors.close();
    await sandbox.close();
    await db.close();
    rmSync(state, { recursive: true, force: true });
  }
}
