import { Type } from '@sinclair/typebox';
import { browserConnector } from '../../connectors/browser/connector.ts';
import { storageConnector } from '../../connectors/storage/connector.ts';
import { defineStep } from '../../engine/sdk.ts';
import { templatesResource } from '../resources.ts';
import type { Analysis, SearchIntel } from './model.ts';
import { publishReport, reportCost, reportLinks, reportView } from './publish.ts';

/**
 * `report.render`: the report as HTML and A4 PDF, stored under an unguessable token and
 * recorded in generated_reports with what it cost, through publish.ts as `flows report` does.
 */

const Usage = Type.Object({ input_tokens: Type.Integer({ minimum: 0 }), output_tokens: Type.Integer({ minimum: 0 }) });

export const reportRender = defineStep({
  type: 'report.render',
  description: 'Renders the report (HTML and A4 PDF), stores both under an unguessable token and records it in generated_reports with its cost.',
  input: Type.Object(
    {
      intel: Type.Record(Type.String(), Type.Unknown(), { description: 'The output of intel.collect.' }),
      analysis: Type.Record(Type.String(), Type.Unknown(), { description: 'The analysis of report.analyse.' }),
      claude_usage: Type.Optional(Usage),
      claude_source: Type.Unsafe<'live' | 'sandbox'>({
        type: 'string',
        enum: ['live', 'sandbox'],
        description: 'Who wrote the analysis (report.analyse\'s output.source): "sandbox" marks the report as sample data, as a sandbox in intel.sources does.',
      }),
      claude_via: Type.Optional(Type.Unsafe<'single' | 'batch'>({ type: 'string', enum: ['single', 'batch'], description: 'batch: the analysis came from report.analyse_batch (priced at batch prices).' })),
      company: Type.Optional(Type.String({ description: 'Name on the report (default: the domain).' })),
      prospect_id: Type.Optional(Type.Union([Type.String(), Type.Null()], { description: 'The prospect the report is for, when known.' })),
      event: Type.Optional(
        Type.Object(
          {
            type: Type.String({ pattern: '^[a-z][a-z0-9_.-]*$', description: 'Event type, e.g. report.generated.' }),
            payload: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'Besides report_id, prospect_id and domain, which it always carries.' })),
          },
          { additionalProperties: false, description: 'An event recorded with the report\'s row in one statement (key: the prospect, else the domain).' },
        ),
      ),
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
      const view = reportView(ctx.config, intel, input.analysis as unknown as Analysis, input.company, ctx.clock.now(), input.claude_source);
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
    const view = reportView(ctx.config, intel, input.analysis as unknown as Analysis, input.company, ctx.clock.now(), input.claude_source);
    return publishReport(
      { renderer, browser, storage, db: ctx.db, config: ctx.config, signal: ctx.signal },
      {
        view,
        claudeUsage: input.claude_usage ?? { input_tokens: 0, output_tokens: 0 },
        claudeVia: input.claude_via,
        prospectId: input.prospect_id,
        runId: ctx.run.id,
        effectKey: ctx.effectKey,
        ...(input.event ? { event: { ...input.event, at: ctx.clock.now() } } : {}),
      },
    );
  },
});
