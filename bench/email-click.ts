/**
 * A person's click to the follow-up in their inbox: the real daemon with the shipped
 * pipelines/click-report.yaml and config, the SEMrush, SpyFu and Claude clients pointed at
 * sandboxes that answer after the given latencies (connectors/sandbox/faults.ts latencyMs),
 * and the SMTP sandbox as the configured server. A teaser is in the outbox, sent an hour
 * ago; the bench POSTs its landing page /r/<token> (the "Get my report" button, as a browser
 * sends it) and times from the POST to the follow-up being in the SMTP sandbox.
 *
 * Two cases: zero-latency sandboxes (goal <= 30 s) and realistic latencies, SEMrush and SpyFu
 * 300 ms a call and Claude 20 s (goal <= 90 s). The floor printed beside each is the waits the
 * sandboxes put on the critical path: max(SEMrush, SpyFu) + Claude.
 *
 * Only when pipelines/click-report.yaml is in the checkout; otherwise clickToFollowUp says so.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { browserConnector } from '../connectors/browser/connector.ts';
import { startSmtpSandbox } from '../connectors/smtp/sandbox.ts';
import { Daemon } from '../engine/daemon/daemon.ts';
import { openDatabase } from '../engine/db/connect.ts';
import { RunEvents } from '../engine/events.ts';
import { loadPipeline } from '../engine/pipeline/load.ts';
import { landingPageUrl } from '../steps/email/links.ts';
import { builtinPages, createRegistry } from '../steps/index.ts';
import { businessMigrations } from '../steps/tables.ts';
import { benchResources, type Latencies, PIPELINES_DIR, shippedConfig, startConnectors } from './report-kit.ts';

export const CLICK_REPORT = join(PIPELINES_DIR, 'click-report.yaml');
const LINK_SECRET = 'link-secret-for-the-click-bench-0123456789';
const CASES: { name: string; latencies: Latencies; goalMs: number }[] = [
  { name: 'zero-latency sandboxes', latencies: { semrushMs: 0, spyfuMs: 0, claudeMs: 0 }, goalMs: 30_000 },
  { name: 'SEMrush and SpyFu 300 ms a call, Claude 20 s', latencies: { semrushMs: 300, spyfuMs: 300, claudeMs: 20_000 }, goalMs: 90_000 },
];

export interface ClickCase {
  name: string;
  latencies: Latencies;
  /** POST of the landing page to the follow-up in the SMTP sandbox. */
  totalMs: number;
  /** max(SEMrush, SpyFu) + Claude: the injected waits on the critical path. */
  floorMs: number;
  /** POST to the click-report run starting. */
  runStartMs: number;
  goalMs: number;
  steps: { id: string; startMs: number; ms: number }[];
}

export interface ClickFigures {
  cases: ClickCase[];
}

/** Both cases, one after the other; a sentence instead when click-report is not in this checkout. */
export async function clickToFollowUp(say: (s: string) => void): Promise<ClickFigures | string> {
  if (!existsSync(CLICK_REPORT)) return 'click-report: not in this checkout';
  const cases: ClickCase[] = [];
  for (const c of CASES) {
    say(`click to follow-up, ${c.name} ...`);
    cases.push({ ...(await oneClick(c.latencies, say)), name: c.name, goalMs: c.goalMs });
  }
  return { cases };
}

async function oneClick(latencies: Latencies, say: (s: string) => void): Promise<Omit<ClickCase, 'name' | 'goalMs'>> {
  const state = mkdtempSync(join(tmpdir(), 'flows-bench-click-'));
  const env = { FLOWS_LINK_SECRET: LINK_SECRET };
  const smtp = await startSmtpSandbox();
  const shipped = shippedConfig(state, env);
  const config = { ...shipped, public_url: 'https://reports.example.test', connectors: { ...shipped.connectors, smtp: { host: smtp.host, port: smtp.port } } };
  const registry = createRegistry();
  const { pipeline, diagnostics } = loadPipeline(readFileSync(CLICK_REPORT, 'utf8'), CLICK_REPORT, { registry, config });
  if (!pipeline) throw new Error(`${CLICK_REPORT}: ${diagnostics.map((d) => d.message).join('; ')}`);
  const db = await openDatabase({ dataDir: 'memory://', migrations: businessMigrations });
  const connectors = await startConnectors(config, latencies);
  const resources = benchResources(config, env, state, connectors);
  const events = new RunEvents();
  const daemon = new Daemon({ db, config, pipelines: [pipeline], pages: builtinPages, verifiers: registry.verifiers, resources, env, port: 0, events });
  try {
    const outboxId = await sentTeaser(db);
    await daemon.start();
    await (await resources.use(browserConnector)).pdf('<p>warm-up</p>');
    const path = new URL(landingPageUrl(config, outboxId, new Date())).pathname;

    let t0 = NaN;
    const at = () => performance.now() - t0;
    let runStart = NaN;
    const marks: { id: string; start: number; end?: number }[] = [];
    events.on('run:start', () => (runStart = Number.isNaN(runStart) ? at() : runStart));
    events.on('step:start', (e) => marks.push({ id: e.stepId, start: at() }));
    events.on('step:finish', (e) => Object.assign(marks.findLast((m) => m.id === e.stepId) ?? {}, { end: at() }));

    say(`  posting the landing page's button; the follow-up should arrive after about ${((Math.max(latencies.semrushMs, latencies.spyfuMs) + latencies.claudeMs) / 1000).toFixed(1)} s ...`);
    t0 = performance.now();
    const answer = await fetch(`${daemon.url}${path}`, {
      method: 'POST',
      body: 'confirm=yes',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'user-agent': 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15' },
      redirect: 'manual',
    });
    if (answer.status !== 303) throw new Error(`the landing page answered ${answer.status}: ${await answer.text()}`);
    await smtp.waitFor(1, latencies.claudeMs + 120_000);
    const totalMs = at();
    return {
      latencies,
      totalMs,
      floorMs: Math.max(latencies.semrushMs, latencies.spyfuMs) + latencies.claudeMs,
      runStartMs: runStart,
      steps: marks.map((m) => ({ id: m.id, startMs: m.start, ms: (m.end ?? NaN) - m.start })),
    };
  } finally {
    await daemon.stop();
    await resources.close();
    await connectors.close();
    await smtp.close();
    await db.close();
    rmSync(state, { recursive: true, force: true });
  }
}

/** A prospect with a teaser of the shipped campaign, sent an hour ago from the first mailbox; its outbox id. */
async function sentTeaser(db: Awaited<ReturnType<typeof openDatabase>>): Promise<string> {
  const metrics = { organic_traffic: 12_000, paid_share: 0.3, competitor_gap: 2.5, top_competitor: 'rival-widgets.com', page2_keywords: 9, traffic_trend: -0.2 };
  const [prospect] = await db.query<{ id: string }>(
    `INSERT INTO prospects (domain, company_name, contact_name, email, category, category_reason, metrics)
     VALUES ('click-widgets.com', 'Click Widgets', 'Ada Baker', 'ada@click-widgets.com', 'traffic-falling', 'organic interest down 20% over the last three months', $1) RETURNING id`,
    [JSON.stringify(metrics)],
  );
  const sentAt = new Date(Date.now() - 3_600_000);
  const [row] = await db.query<{ id: string }>(
    `INSERT INTO email_outbox (campaign, prospect_id, sequence_step, step_index, address, mailbox, domain, variant, subject, idempotency_key, due_at, state, message_id, sent_at)
     VALUES ('search-visibility', $1, 'teaser', 0, 'ada@click-widgets.com', 'ana.ruiz@intel-mail-one.example', 'intel-mail-one.example', 'a', 'Click Widgets''s search visibility',
             $2, $3, 'sent', '<bench-click-teaser@intel-mail-one.example>', $3) RETURNING id`,
    [prospect!.id, `search-visibility:${prospect!.id}:teaser`, sentAt],
  );
  return String(row!.id);
}
