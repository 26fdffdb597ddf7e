import { randomBytes } from 'node:crypto';
import type { PdfRenderer } from '../../connectors/browser/browser.ts';
import type { ReportStorage } from '../../connectors/storage/index.ts';
import { type DataSource, type EngineConfig, priceOf, type Queryable } from '../../engine/sdk.ts';
import { type Analysis, type ReportCost, type ReportView, type SearchIntel, sampleServicesOf } from './model.ts';
import type { ReportRenderer } from './templates.ts';

/**
 * Publishing a report, for the report.render step and `flows report`: HTML and A4 PDF,
 * stored under an unguessable token and recorded in generated_reports with what it cost.
 * The daemon serves it at <public_url>/reports/<token> and <public_url>/reports/<token>.pdf.
 */

/** 24 random bytes: 192 bits, written in 32 URL-safe characters. */
export function newReportToken(): string {
  return randomBytes(24).toString('base64url');
}

/** Where links in emails lead: config public_url, else the daemon's own address. */
export function publicBase(config: EngineConfig): string {
  return (config.public_url ?? `http://127.0.0.1:${config.daemon?.port ?? 8080}`).replace(/\/+$/, '');
}

/** The link a buyer gets. */
export function reportLinks(config: EngineConfig, token: string): { url: string; pdf_url: string } {
  const base = publicBase(config);
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
  /**
   * An event recorded with the report's row, in the same statement (report.generated): key the
   * prospect (else the domain), payload `payload` with report_id, prospect_id and domain.
   * Not recorded when the row existed (a repeat).
   */
  event?: { type: string; payload?: Record<string, unknown>; at: Date };
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
  const pdf = await deps.browser.pdf(html, { footerText: `${view.company} · ${view.business.name}`, pageMark: sampleMark(view), title: reportTitle(view), signal: deps.signal });
  const pdfMs = performance.now() - t;
  t = performance.now();
  const token = newReportToken();
  const htmlKey = `${token}/report.html`;
  const pdfKey = `${token}/report.pdf`;
  await deps.storage.put(htmlKey, html, 'text/html; charset=utf-8', { signal: deps.signal });
  await deps.storage.put(pdfKey, pdf, 'application/pdf', { signal: deps.signal });
  const cost = reportCost(view.intel, request.claudeUsage, deps.config.prices, request.claudeVia);
  const params = [request.prospectId ?? null, view.intel.domain, view.company, token, htmlKey, pdfKey, pdf.length, JSON.stringify(cost), cost.usd, request.runId ?? null, request.effectKey ?? null];
  // A row made by an earlier attempt wins: its files are the ones already linked to.
  const insert = `INSERT INTO generated_reports (prospect_id, domain, company_name, token, html_path, pdf_path, pdf_bytes, cost, cost_usd, run_id, effect_key)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
     ON CONFLICT (effect_key) DO NOTHING
     RETURNING id, token, html_path, pdf_path, pdf_bytes, cost`;
  const event = request.event;
  const rows = event
    ? await deps.db.query<ReportRow>(
        `WITH r AS (${insert}),
         e AS (INSERT INTO flow_events (type, key, payload, run_id, occurred_at)
               SELECT $12, $13, $14::jsonb || jsonb_build_object('report_id', r.id::text), $10, $15 FROM r)
         SELECT * FROM r`,
        [...params, event.type, request.prospectId ?? view.intel.domain, JSON.stringify({ ...event.payload, prospect_id: request.prospectId ?? null, domain: view.intel.domain }), event.at],
      )
    : await deps.db.query<ReportRow>(insert, params);
  const row = rows[0] ?? (await deps.db.query<ReportRow>(`${SELECT} WHERE effect_key = $1`, [request.effectKey]))[0]!;
  return published(row, deps.config, { html_ms: htmlMs, pdf_ms: pdfMs, store_ms: performance.now() - t });
}

/** The report's title, on its page and in its PDF. */
export function reportTitle(view: ReportView): string {
  return `${view.company}: search intelligence report`;
}

/** The mark on every page of a report made from sandbox data, or none. */
export function sampleMark(view: ReportView): string | undefined {
  return view.sampleServices.length ? `SAMPLE DATA (${view.sampleServices.join(', ')} sandbox): not a real analysis` : undefined;
}

/** What a report shows; `analysisSource` is who wrote the analysis (report.analyse's output.source). */
export function reportView(config: EngineConfig, intel: SearchIntel, analysis: Analysis, company: string | undefined, now: Date, analysisSource: DataSource): ReportView {
  return {
    company: company?.trim() || intel.domain,
    intel,
    analysis,
    generatedAt: now.toISOString(),
    business: { name: config.business?.name ?? 'flows', address: config.business?.address },
    sampleServices: sampleServicesOf(intel, analysisSource),
  };
}
