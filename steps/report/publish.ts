import { randomBytes } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import type { PdfRenderer } from '../../connectors/browser/browser.ts';
import { browserConnector } from '../../connectors/browser/connector.ts';
import { storageConnector } from '../../connectors/storage/connector.ts';
import type { ReportStorage } from '../../connectors/storage/index.ts';
import { defineStep, type EngineConfig, priceOf, type Queryable } from '../../engine/sdk.ts';
import { templatesResource } from '../resources.ts';
import type { Analysis, ReportCost, ReportView, SearchIntel } from './model.ts';
import type { ReportRenderer } from './templates.ts';

/**
 * `report.render`: the report as HTML and A4 PDF, stored under an unguessable token and
 * recorded in generated_reports with what it cost. The daemon serves it at
 * <public_url>/reports/<token> and <public_url>/reports/<token>.pdf.
 */

/** 24 random bytes: 192 bits, written in 32 URL-safe characters. */
export function newReportToken(): string {
  return randomBytes(24).toString('base64url');
}

/** The link a buyer gets: config public_url, else the daemon's own address. */
export function reportLinks(config: EngineConfig, token: string): { url: string; pdf_url: string } {
  const base = (config.public_url ?? `http://127.0.0.1:${config.daemon?.port ?? 8080}`).replace(/\/+$/, '');
  return { url: `${base}/reports/${token}`, pdf_url: `${base}/reports/${token}.pdf` };
}

export interface PublishDeps {
  renderer: ReportRenderer;
  browser: PdfRenderer;
  storage: ReportStorage;
  db: Queryable;
  config: EngineConfig;
  signal?: AbortSignal;
}

export interface PublishRequest {
  view: ReportView;
  claudeUsage: { input_tokens: number; output_tokens: number };
  /** The analysis came from a message batch (priced at batch prices). */
  claudeVia?: 'single' | 'batch';
  prospectId?: string | null;
  runId?: string | null;
  /** Makes a retry after a crash find the report made before instead of making another. */
  effectKey?: string | null;
}

export interface PublishedReport {
  report_id: string;
  token: string;
  url: string;
  pdf_url: string;
  html_key: string;
  pdf_key: string;
  pdf_bytes: number;
  cost: ReportCost;
  /** Milliseconds spent on each stage of this call (zero when the report existed). */
  timings: { html_ms: number; pdf_ms: number; store_ms: number };
}

interface ReportRow {
  id: string;
  token: string;
  html_path: string;
  pdf_path: string;
  pdf_bytes: number | null;
  cost: ReportCost | string;
}

/** What a report cost; tokens of a batch analysis are priced as batch tokens (half price). */
export function reportCost(intel: SearchIntel, usage: { input_tokens: number; output_tokens: number }, prices: Record<string, number> = {}, via: 'single' | 'batch' = 'single'): ReportCost {
  const units = {
    semrush_units: intel.usage.semrushUnits,
    spyfu_rows: intel.usage.spyfuRows,
    claude_input_tokens: usage.input_tokens,
    claude_output_tokens: usage.output_tokens,
  };
  const priced =
    via === 'batch'
      ? { semrush_units: units.semrush_units, spyfu_rows: units.spyfu_rows, claude_batch_input_tokens: usage.input_tokens, claude_batch_output_tokens: usage.output_tokens }
      : units;
  return { ...units, usd: Math.round(priceOf(priced, prices) * 1e6) / 1e6 };
}

function published(row: ReportRow, config: EngineConfig, timings: PublishedReport['timings']): PublishedReport {
  return {
    report_id: row.id,
    token: row.token,
    ...reportLinks(config, row.token),
    html_key: row.html_path,
    pdf_key: row.pdf_path,
    pdf_bytes: row.pdf_bytes ?? 0,
    cost: typeof row.cost === 'string' ? (JSON.parse(row.cost) as ReportCost) : row.cost,
    timings,
  };
}

const SELECT = 'SELECT id, token, html_path, pdf_path, pdf_bytes, cost FROM generated_reports';

export async function publishReport(deps: PublishDeps, request: PublishRequest): Promise<PublishedReport> {
  const { view } = request;
  if (request.effectKey) {
    const [done] = await deps.db.query<ReportRow>(`${SELECT} WHERE effect_key = $1`, [request.effectKey]);
    if (done) return published(done, deps.config, { html_ms: 0, pdf_ms: 0, store_ms: 0 });
  }
  let t = performance.now();
  const html = await deps.renderer.render(view);
  const htmlMs = performance.now() - t;
  t = performance.now();
  const pdf = await deps.browser.pdf(html, { footerText: `${view.company} · ${view.business.name}`, signal: deps.signal });
  const pdfMs = performance.now() - t;
  t = performance.now();
  const token = newReportToken();
  const htmlKey = `${token}/report.html`;
  const pdfKey = `${token}/report.pdf`;
  await deps.storage.put(htmlKey, html, 'text/html; charset=utf-8', { signal: deps.signal });
  await deps.storage.put(pdfKey, pdf, 'application/pdf', { signal: deps.signal });
  const cost = reportCost(view.intel, request.claudeUsage, deps.config.prices, request.claudeVia);
  // A row made by an earlier attempt wins: its files are the ones already linked to.
  const rows = await deps.db.query<ReportRow>(
    `INSERT INTO generated_reports (prospect_id, domain, company_name, token, html_path, pdf_path, pdf_bytes, cost, cost_usd, run_id, effect_key)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
     ON CONFLICT (effect_key) DO NOTHING
     RETURNING id, token, html_path, pdf_path, pdf_bytes, cost`,
    [request.prospectId ?? null, view.intel.domain, view.company, token, htmlKey, pdfKey, pdf.length, JSON.stringify(cost), cost.usd, request.runId ?? null, request.effectKey ?? null],
  );
  const row = rows[0] ?? (await deps.db.query<ReportRow>(`${SELECT} WHERE effect_key = $1`, [request.effectKey]))[0]!;
  return published(row, deps.config, { html_ms: htmlMs, pdf_ms: pdfMs, store_ms: performance.now() - t });
}

export function reportView(config: EngineConfig, intel: SearchIntel, analysis: Analysis, company: string | undefined, now: Date): ReportView {
  return {
    company: company?.trim() || intel.domain,
    intel,
    analysis,
    generatedAt: now.toISOString(),
    business: { name: config.business?.name ?? 'flows', address: config.business?.address },
  };
}

const Usage = Type.Object({ input_tokens: Type.Integer({ minimum: 0 }), output_tokens: Type.Integer({ minimum: 0 }) });

export const reportRender = defineStep({
  type: 'report.render',
  description: 'Renders the report (HTML and A4 PDF), stores both under an unguessable token and records it in generated_reports with its cost.',
  input: Type.Object(
    {
      intel: Type.Record(Type.String(), Type.Unknown(), { description: 'The output of intel.collect.' }),
      analysis: Type.Record(Type.String(), Type.Unknown(), { description: 'The analysis of report.analyse.' }),
      claude_usage: Type.Optional(Usage),
      claude_via: Type.Optional(Type.Unsafe<'single' | 'batch'>({ type: 'string', enum: ['single', 'batch'], description: 'batch: the analysis came from report.analyse_batch (priced at batch prices).' })),
      company: Type.Optional(Type.String({ description: 'Name on the report (default: the domain).' })),
      prospect_id: Type.Optional(Type.Union([Type.String(), Type.Null()], { description: 'The prospect the report is for, when known.' })),
    },
    { additionalProperties: false },
  ),
  output: Type.Object(
    {
      report_id: Type.String(),
      token: Type.String(),
      url: Type.String({ description: 'The HTML page, behind the token.' }),
      pdf_url: Type.String(),
      html_key: Type.String({ description: 'Storage key of the HTML.' }),
      pdf_key: Type.String({ description: 'Storage key of the PDF (attach it with email.send).' }),
      pdf_bytes: Type.Integer(),
      cost: Type.Object({
        semrush_units: Type.Number(),
        spyfu_rows: Type.Number(),
        claude_input_tokens: Type.Number(),
        claude_output_tokens: Type.Number(),
        usd: Type.Number(),
      }),
      timings: Type.Object({ html_ms: Type.Number(), pdf_ms: Type.Number(), store_ms: Type.Number() }),
    },
    { additionalProperties: false },
  ),
  effect: {
    kind: () => 'report',
    // The row is keyed by the effect key: a repeat finds it and makes nothing new.
    providerIdempotent: () => true,
    async plan(ctx, input) {
      const intel = input.intel as unknown as SearchIntel;
      const view = reportView(ctx.config, intel, input.analysis as unknown as Analysis, input.company, ctx.clock.now());
      const html = await (await ctx.use(templatesResource)).render(view);
      const token = 'dry-run';
      return {
        summary: `report for ${view.company} (${intel.domain}): HTML ${Math.round(html.length / 1024)} KiB and PDF`,
        output: {
          report_id: '(dry run)',
          token,
          ...reportLinks(ctx.config, token),
          html_key: `${token}/report.html`,
          pdf_key: `${token}/report.pdf`,
          pdf_bytes: 0,
          cost: reportCost(intel, input.claude_usage ?? { input_tokens: 0, output_tokens: 0 }, ctx.config.prices),
          timings: { html_ms: 0, pdf_ms: 0, store_ms: 0 },
        },
        artifacts: [{ name: 'report.html', content: html }],
      };
    },
  },
  async run(ctx, input) {
    const [renderer, browser, storage] = await Promise.all([ctx.use(templatesResource), ctx.use(browserConnector), ctx.use(storageConnector)]);
    const intel = input.intel as unknown as SearchIntel;
    const view = reportView(ctx.config, intel, input.analysis as unknown as Analysis, input.company, ctx.clock.now());
    return publishReport(
      { renderer, browser, storage, db: ctx.db, config: ctx.config, signal: ctx.signal },
      { view, claudeUsage: input.claude_usage ?? { input_tokens: 0, output_tokens: 0 }, claudeVia: input.claude_via, prospectId: input.prospect_id, runId: ctx.run.id, effectKey: ctx.effectKey },
    );
  },
});
