import { Type } from '@sinclair/typebox';
import { DURATION_PATTERN, defineStep, NonRetriableError, parseDuration } from '../../engine/sdk.ts';
import { reportLinks } from './publish.ts';

/**
 * `report.find`: the newest report of a prospect, or of its domain, made within `within`
 * (generated_reports). A pipeline sends a fresh one as it is instead of paying for the same
 * data and analysis again; `found: false` tells it to make one. A read: the dry run finds
 * the same.
 */

const Nullable = (description?: string) => Type.Union([Type.String(), Type.Null()], description ? { description } : {});

export const reportFind = defineStep({
  type: 'report.find',
  description: 'Finds the newest report of a prospect or its domain made within a time (default 30 days): its id and links, or found: false.',
  input: Type.Object(
    {
      prospect_id: Type.Optional(Nullable('The prospect the report was made for.')),
      domain: Type.Optional(Nullable('Or any report of this domain (one made by flows report, or for a payment).')),
      within: Type.Optional(Type.String({ pattern: DURATION_PATTERN, default: '30d', 'x-hint': 'a duration, like "30d"', description: 'How recent the report must be (default 30d).' })),
    },
    { additionalProperties: false },
  ),
  output: Type.Object(
    {
      found: Type.Boolean(),
      report_id: Nullable(),
      token: Nullable(),
      url: Nullable('The HTML page, behind the token.'),
      pdf_url: Nullable(),
      created_at: Nullable(),
    },
    { additionalProperties: false },
  ),
  async run(ctx, input) {
    if (!input.prospect_id && !input.domain) throw new NonRetriableError('report.find: give prospect_id or domain (or both)');
    const since = new Date(ctx.clock.now().getTime() - parseDuration(input.within ?? '30d')!);
    const [row] = await ctx.db.query<{ id: string; token: string; created_at: Date | string }>(
      `SELECT id::text AS id, token, created_at FROM generated_reports
        WHERE (prospect_id::text = $1 OR domain = $2) AND created_at >= $3 AND html_path IS NOT NULL
        ORDER BY created_at DESC LIMIT 1`,
      [input.prospect_id ?? null, input.domain ?? null, since],
    );
    if (!row) return { found: false, report_id: null, token: null, url: null, pdf_url: null, created_at: null };
    return { found: true, report_id: row.id, token: row.token, ...reportLinks(ctx.config, row.token), created_at: new Date(row.created_at).toISOString() };
  },
});
