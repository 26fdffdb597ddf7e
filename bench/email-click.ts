/**
 * A person's click to the follow-up in their inbox: the real daemon (its loops on, as
 * `flows daemon` runs) with the shipped pipelines/click-report.yaml and config, the SEMrush,
 * SpyFu and Claude clients pointed at sandboxes that answer after the given latencies
 * (report-kit's startConnectors, as bench/report-e2e.ts does), Chromium for the PDF, and
 * the SMTP sandbox as the configured server. Teasers are in the outbox, sent an hour ago;
 * each click POSTs a teaser's landing page /r/<token> through the daemon's HTTP server (the
 * "Get my report" button, as a browser sends it; email.clicks.mode is confirm) and times from
 * the POST to the follow-up being in the SMTP sandbox. The follow-up is checked: to the
 * teaser's address, from its mailbox, In-Reply-To its Message-ID, with the report's link.
 *
 * Cases, on each database asked for, with zero-latency sandboxes (goal <= 30 s) and with
 * realistic ones, SEMrush and SpyFu 300 ms a call and Claude 20 s (goal <= 90 s):
 * - generate: the prospect has no report; the run makes one (SEMrush, SpyFu, Claude, HTML,
 *   PDF) then sends the follow-up;
 * - reuse: the prospect has a report made three days ago (report.find finds it); the run
 *   sends its link.
 * `clicks` clicks per case, one after another (each a prospect of its own: click-report runs
 * once per prospect in 30 days), generate and reuse taking turns; before them one untimed
 * warm-up click per daemon (its first run, whose report the reuse prospects' rows point at).
 * Each case gives the median and max, the floor (the waits the sandboxes put on the critical
 * path: max(SEMrush, SpyFu) + Claude, and with the config's rate limits) and time per step.
 *
 * Only when pipelines/click-report.yaml is in the checkout; otherwise clickToFollowUp says so.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { browserConnector } from '../connectors/browser/connector.ts';
import { type ReceivedEmail, startSmtpSandbox } from '../connectors/smtp/sandbox.ts';
import { Daemon } from '../engine/daemon/daemon.ts';
import type { Database } from '../engine/db/connect.ts';
import { RunEvents } from '../engine/events.ts';
import { loadPipeline } from '../engine/pipeline/load.ts';
import { landingPageUrl } from '../steps/email/links.ts';
import { mailboxesOf } from '../steps/email/settings.ts';
import { builtinPages, createRegistry } from '../steps/index.ts';
import { table } from './common.ts';
import { benchResources, fmt, injectedWaits, type Latencies, median, PIPELINES_DIR, shippedConfig, startConnectors } from './report-kit.ts';

export const CLICK_REPORT = join(PIPELINES_DIR, 'click-report.yaml');
const LINK_SECRET = 'link-secret-for-the-click-bench-0123456789';
const USER_AGENT = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15';

export type LatencyName = 'zero' | 'realistic';
export const LATENCIES: Record<LatencyName, { label: string; latencies: Latencies; goalMs: number }> = {
  zero: { label: 'zero-latency sandboxes', latencies: { semrushMs: 0, spyfuMs: 0, claudeMs: 0 }, goalMs: 30_000 },
  realistic: { label: 'SEMrush and SpyFu 300 ms a call, Claude 20 s', latencies: { semrushMs: 300, spyfuMs: 300, claudeMs: 20_000 }, goalMs: 90_000 },
};
export type ReportCase = 'generate' | 'reuse';

export interface ClickSample {
  /** POST of the landing page to the follow-up in the SMTP sandbox. */
  totalMs: number;
  /** POST to its 303 answer. */
  answerMs: number;
  /** POST to the click-report run starting (dispatch, queue, claim). */
  runStartMs: number;
  /** Milliseconds per step of the run, by step id (steps skipped by `when` take their check only; one still going at the arrival, to the arrival). */
  steps: Record<string, number>;
}

export interface ClickCase {
  db: string;
  latency: LatencyName;
  report: ReportCase;
  latencies: Latencies;
  goalMs: number;
  /** The injected waits on the critical path (0 for reuse: no paid call is made). */
  floorMs: number;
  /** The floor with the config's rate limits spacing one service's calls. */
  rateLimitedFloorMs: number;
  samples: ClickSample[];
  medianMs: number;
  maxMs: number;
}

export interface ClickFigures {
  clicks: number;
  cases: ClickCase[];
  /** Each daemon's first click (a generate), untimed in the cases. */
  warmups: { db: string; latency: LatencyName; totalMs: number; runStartMs: number }[];
}

export interface ClickOptions {
  dbs: readonly { kind: string; open: () => Promise<Database> }[];
  latencies: readonly LatencyName[];
  clicks: number;
}

/** Every case asked for; a sentence instead when click-report is not in this checkout. */
export async function clickToFollowUp(options: ClickOptions, say: (s: string) => void): Promise<ClickFigures | string> {
  if (!existsSync(CLICK_REPORT)) return 'click-report: not in this checkout';
  const figures: ClickFigures = { clicks: options.clicks, cases: [], warmups: [] };
  for (const db of options.dbs) {
    for (const latency of options.latencies) {
      say(`click to follow-up on ${db.kind}, ${LATENCIES[latency].label}: a warm-up click, then ${options.clicks} per case ...`);
      const got = await clickSeries(db, latency, options.clicks, say);
      figures.cases.push(...got.cases);
      figures.warmups.push(got.warmup);
    }
  }
  return figures;
}

interface Prospect {
  outboxId: string;
  address: string;
  mailbox: string;
  messageId: string;
  /** The report URL the follow-up must carry, when known before (reuse). */
  reportToken?: string;
}

async function clickSeries(
  dbChoice: ClickOptions['dbs'][number],
  latency: LatencyName,
  clicks: number,
  say: (s: string) => void,
): Promise<{ cases: ClickCase[]; warmup: ClickFigures['warmups'][number] }> {
  const { latencies, goalMs } = LATENCIES[latency];
  const state = mkdtempSync(join(tmpdir(), 'flows-bench-click-'));
  const env = { FLOWS_LINK_SECRET: LINK_SECRET };
  const smtp = await startSmtpSandbox();
  const shipped = shippedConfig(state, env);
  const config = { ...shipped, public_url: 'https://reports.example.test', connectors: { ...shipped.connectors, smtp: { host: smtp.host, port: smtp.port } } };
  const registry = createRegistry();
  const { pipeline, diagnostics } = loadPipeline(readFileSync(CLICK_REPORT, 'utf8'), CLICK_REPORT, { registry, config });
  if (!pipeline) throw new Error(`${CLICK_REPORT}: ${diagnostics.map((d) => d.message).join('; ')}`);
  const db = await dbChoice.open();
  const connectors = await startConnectors(config, latencies);
  const resources = benchResources(config, env, state, connectors);
  const events = new RunEvents();
  const daemon = new Daemon({ db, config, pipelines: [pipeline], pages: builtinPages, verifiers: registry.verifiers, resources, env, port: 0, events });
  try {
    // Replies go under the quota "reply" (a cap a day per mailbox): the teasers take turns over the mailboxes.
    const mailboxes = mailboxesOf(config).map((m) => m.address);
    let n = 0;
    const teaser = (tag: string) => sentTeaser(db, `${tag}-widgets.com`, mailboxes[n++ % mailboxes.length]!);
    const warm = await teaser('warm-up');
    const generate: Prospect[] = [];
    const reuse: Prospect[] = [];
    for (let i = 0; i < clicks; i++) {
      generate.push(await teaser(`generate-${i}`));
      reuse.push(await teaser(`reuse-${i}`));
    }
    await daemon.start();
    await (await resources.use(browserConnector)).pdf('<p>warm-up</p>');

    let current: { t0: number; runId?: string; runStart: number; steps: Map<string, { start: number; end?: number }> } | undefined;
    events.on('run:start', (e) => {
      if (current && !current.runId) Object.assign(current, { runId: e.runId, runStart: performance.now() - current.t0 });
    });
    events.on('step:start', (e) => {
      if (current?.runId === e.runId) current.steps.set(e.stepId, { start: performance.now() });
    });
    events.on('step:finish', (e) => {
      const mark = current?.runId === e.runId ? current.steps.get(e.stepId) : undefined;
      if (mark) mark.end = performance.now();
    });

    const click = async (p: Prospect): Promise<ClickSample> => {
      const path = new URL(landingPageUrl(config, p.outboxId, new Date())).pathname;
      const before = smtp.messages.length;
      const t0 = performance.now();
      current = { t0, runStart: NaN, steps: new Map() };
      const answer = await fetch(`${daemon.url}${path}`, {
        method: 'POST',
        body: 'confirm=yes',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'user-agent': USER_AGENT },
        redirect: 'manual',
      });
      const answerMs = performance.now() - t0;
      if (answer.status !== 303) throw new Error(`the landing page answered ${answer.status}: ${await answer.text()}`);
      const [mail] = (await smtp.waitFor(before + 1, latencies.claudeMs + 120_000)).slice(before);
      const totalMs = performance.now() - t0;
      const run = current;
      current = undefined;
      await checkFollowUp(db, config.public_url, p, mail!);
      // The last step (send) is still recording its outcome when the email arrives: it counts to the arrival.
      const steps = Object.fromEntries([...run.steps].map(([id, m]) => [id, (m.end ?? t0 + totalMs) - m.start]));
      return { totalMs, answerMs, runStartMs: run.runStart, steps };
    };

    say('  warm-up click (a report made) ...');
    const first = await click(warm);
    // The reuse prospects' reports: the warm-up's files, each under a token of its own, made three days ago.
    const [made] = await db.query<{ html_path: string; pdf_path: string | null }>('SELECT html_path, pdf_path FROM generated_reports WHERE token = $1', [warm.reportToken]);
    for (const p of reuse) {
      p.reportToken = randomBytes(24).toString('base64url');
      const [row] = await db.query<{ id: string }>('SELECT prospect_id::text AS id FROM email_outbox WHERE id = $1', [p.outboxId]);
      await db.query(
        "INSERT INTO generated_reports (prospect_id, domain, token, html_path, pdf_path, created_at) SELECT $1, domain, $2, $3, $4, now() - interval '3 days' FROM prospects WHERE id = $1",
        [row!.id, p.reportToken, made!.html_path, made!.pdf_path],
      );
    }
    const samples: Record<ReportCase, ClickSample[]> = { generate: [], reuse: [] };
    for (let i = 0; i < clicks; i++) {
      for (const [kind, list] of [['generate', generate], ['reuse', reuse]] as const) {
        const s = await click(list[i]!);
        samples[kind].push(s);
        say(`  ${kind} ${i + 1}/${clicks}: ${(s.totalMs / 1000).toFixed(2)} s (run started after ${(s.runStartMs / 1000).toFixed(2)} s)`);
      }
    }
    const waits = injectedWaits(config, latencies);
    const cases = (['generate', 'reuse'] as const).map((report): ClickCase => {
      const totals = samples[report].map((s) => s.totalMs);
      return {
        db: dbChoice.kind,
        latency,
        report,
        latencies,
        goalMs,
        ...(report === 'generate' ? waits : { floorMs: 0, rateLimitedFloorMs: 0 }),
        samples: samples[report],
        medianMs: median(totals),
        maxMs: Math.max(...totals),
      };
    });
    return { cases, warmup: { db: dbChoice.kind, latency, totalMs: first.totalMs, runStartMs: first.runStartMs } };
  } finally {
    await daemon.stop();
    await resources.close();
    await connectors.close();
    await smtp.close();
    await db.close();
    rmSync(state, { recursive: true, force: true });
  }
}

/** The follow-up as it must be: to the teaser's address, from its mailbox, in its thread, with the report's link. Fills in the token of a report made by the run. */
async function checkFollowUp(db: Database, base: string | undefined, p: Prospect, mail: ReceivedEmail): Promise<void> {
  const problems: string[] = [];
  if (mail.envelope.to[0] !== p.address) problems.push(`went to ${mail.envelope.to.join(', ')}, not ${p.address}`);
  if (mail.from?.email !== p.mailbox) problems.push(`came from ${mail.from?.email}, not the teaser's mailbox ${p.mailbox}`);
  if (mail.headers['in-reply-to'] !== p.messageId) problems.push(`In-Reply-To ${mail.headers['in-reply-to']}, not the teaser's ${p.messageId}`);
  if (!p.reportToken) {
    const [made] = await db.query<{ token: string; pdf_path: string | null }>(
      'SELECT r.token, r.pdf_path FROM generated_reports r JOIN email_outbox o ON o.prospect_id = r.prospect_id WHERE o.id = $1 ORDER BY r.created_at DESC LIMIT 1',
      [p.outboxId],
    );
    if (!made) problems.push('no report was made');
    else if (!made.pdf_path) problems.push('the report has no PDF');
    p.reportToken = made?.token;
  }
  const url = `${base}/reports/${p.reportToken}`;
  if (!mail.html?.includes(`href="${url}"`) || !mail.text?.includes(url)) problems.push(`does not link to the report ${url}`);
  if (problems.length) throw new Error(`the follow-up to ${p.address}: ${problems.join('; ')}`);
}

/** A prospect with a teaser of the shipped campaign, sent an hour ago from `mailbox`. */
async function sentTeaser(db: Database, domain: string, mailbox: string): Promise<Prospect> {
  const metrics = { organic_traffic: 12_000, paid_share: 0.3, competitor_gap: 2.5, top_competitor: 'rival-widgets.com', page2_keywords: 9, traffic_trend: -0.2 };
  const address = `ada@${domain}`;
  const company = domain.replace(/-widgets\.com$/, '');
  const [prospect] = await db.query<{ id: string }>(
    `INSERT INTO prospects (domain, company_name, contact_name, email, category, category_reason, metrics)
     VALUES ($1, $2, 'Ada Baker', $3, 'traffic-falling', 'organic interest down 20% over the last three months', $4) RETURNING id::text AS id`,
    [domain, `${company} Widgets`, address, JSON.stringify(metrics)],
  );
  const sentAt = new Date(Date.now() - 3_600_000);
  const messageId = `<bench-click-${company}@${mailbox.split('@')[1]}>`;
  const [row] = await db.query<{ id: string }>(
    `INSERT INTO email_outbox (campaign, prospect_id, sequence_step, step_index, address, mailbox, domain, variant, subject, idempotency_key, due_at, state, message_id, sent_at)
     VALUES ('search-visibility', $1, 'teaser', 0, $2, $3, $4, 'a', $5, $6, $7, 'sent', $8, $7) RETURNING id::text AS id`,
    [prospect!.id, address, mailbox, mailbox.split('@')[1], `${company} Widgets's search visibility`, `search-visibility:${prospect!.id}:teaser`, sentAt, messageId],
  );
  return { outboxId: row!.id, address, mailbox, messageId };
}

const sec = (ms: number, d = 2) => `${fmt(ms / 1000, d)} s`;

/** The cases as a table, then the median time of each step per case, and each daemon's first click. */
export function clickReport(figures: ClickFigures): string[] {
  const rows = figures.cases.map((c) => {
    const totals = c.samples.map((s) => s.totalMs);
    return [
      c.db,
      c.latency === 'zero' ? 'zero' : 'realistic',
      c.report,
      String(c.samples.length),
      sec(c.medianMs),
      sec(c.maxMs),
      c.floorMs ? `${sec(c.floorMs, 1)} / ${sec(c.rateLimitedFloorMs, 1)}` : '-',
      c.floorMs ? `${fmt(c.medianMs / c.floorMs, 3)} / ${fmt(c.medianMs / c.rateLimitedFloorMs, 3)}` : '-',
      c.floorMs ? sec(c.medianMs - c.floorMs) : '-',
      sec(median(c.samples.map((s) => s.runStartMs))),
      sec(median(c.samples.map((s) => s.answerMs)), 3),
      `≤ ${c.goalMs / 1000} s ${Math.max(...totals) <= c.goalMs ? 'met' : 'NOT met'}`,
    ];
  });
  const out = [
    `click to follow-up: a landing page's POST through the daemon to the follow-up in the SMTP sandbox, ${figures.clicks} click(s) per case (each daemon's first click untimed)`,
    table(['db', 'sandboxes', 'report', 'clicks', 'median', 'max', 'injected waits (rate-limited)', 'median / waits', 'median - waits', 'run start (median)', 'POST answered', 'goal (max)'], rows, 3),
  ];
  const ids = [...new Set(figures.cases.flatMap((c) => c.samples.flatMap((s) => Object.keys(s.steps))))];
  out.push(
    '',
    'median per step, ms (steps a `when` skips take their check only; send: to the arrival; the rest of the total is between steps):',
    table(
      ['case', 'run start', ...ids, 'between steps'],
      figures.cases.map((c) => [
        `${c.db} ${c.latency} ${c.report}`,
        fmt(median(c.samples.map((s) => s.runStartMs)), 0),
        ...ids.map((id) => fmt(median(c.samples.map((s) => s.steps[id] ?? NaN).filter(Number.isFinite)), 0)),
        fmt(median(c.samples.map((s) => s.totalMs - s.runStartMs - Object.values(s.steps).reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0))), 0),
      ]),
      1,
    ),
  );
  out.push('', `first click of each daemon (a report made): ${figures.warmups.map((w) => `${w.db} ${w.latency} ${sec(w.totalMs)} (run start ${sec(w.runStartMs)})`).join(', ')}`);
  return out;
}
