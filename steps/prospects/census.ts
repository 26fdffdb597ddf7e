import { Type } from '@sinclair/typebox';
import { configSection, defineStep, type EngineConfig, parseDuration, type Queryable } from '../../engine/sdk.ts';

/**
 * `prospects.census`: which prospects need search data this week. New ones (never
 * enriched) come first, then stale ones, oldest first; fresh ones (enriched within
 * `enrichment.freshness`) are skipped. Rows just read but not saved yet (a dry run) count as
 * new. A prospect known by its LinkedIn profile alone waits for a domain (enrichment looks a
 * domain up): it is counted, not enriched. Also gives the cut-off before which stored data is
 * dropped (`enrichment.retention`: SEMrush's terms allow keeping its data for a month).
 */

export const INTEL_SOURCE = 'search';

export const EnrichmentSchema = Type.Object(
  {
    freshness: Type.Optional(Type.String({ default: '30d', description: 'Data fetched within this is fresh: the prospect is skipped (default "30d").' })),
    retention: Type.Optional(Type.String({ default: '30d', description: 'Data older than this is deleted (default "30d", SEMrush\'s limit).' })),
  },
  { additionalProperties: false, description: 'How weekly enrichment treats data it already has.' },
);

export function enrichmentWindows(config: EngineConfig, now: Date): { freshAfter: Date; dropBefore: Date } {
  const section = configSection<{ freshness?: string; retention?: string }>(config, 'enrichment') ?? {};
  const freshness = parseDuration(section.freshness ?? '30d') ?? 30 * 86_400_000;
  const retention = parseDuration(section.retention ?? '30d') ?? 30 * 86_400_000;
  return { freshAfter: new Date(now.getTime() - freshness), dropBefore: new Date(now.getTime() - retention) };
}

const Target = Type.Object({ domain: Type.String(), prospect_id: Type.Union([Type.String(), Type.Null()]), reason: Type.String() }, { additionalProperties: false });

export const prospectsCensus = defineStep({
  type: 'prospects.census',
  description: 'Counts prospects that are new, stale or fresh (skipped) for enrichment and lists those to enrich, new first then oldest data first.',
  input: Type.Object(
    {
      rows: Type.Optional(
        Type.Array(Type.Object({ domain: Type.Union([Type.String(), Type.Null()]), linkedin_url: Type.Optional(Type.Union([Type.String(), Type.Null()])), problem: Type.Union([Type.String(), Type.Null()]) }), {
          description: 'Rows of prospects.read: in a dry run those not saved yet count as new.',
        }),
      ),
    },
    { additionalProperties: false },
  ),
  output: Type.Object(
    {
      total: Type.Integer(),
      new: Type.Integer(),
      stale: Type.Integer(),
      fresh: Type.Integer(),
      waiting_for_domain: Type.Integer({ description: 'Prospects known by their LinkedIn profile alone: not enriched until a row brings their domain.' }),
      fresh_after: Type.String({ description: 'Data fetched after this is fresh (ISO time).' }),
      drop_before: Type.String({ description: 'Data fetched before this is to be deleted (ISO time).' }),
      to_enrich: Type.Array(Target),
    },
    { additionalProperties: false },
  ),
  async run(ctx, input) {
    const { freshAfter, dropBefore } = enrichmentWindows(ctx.config, ctx.clock.now());
    const rows = await ctx.db.query<{ id: string; domain: string; fetched_at: Date | string | null }>(
      `SELECT p.id, p.domain, i.fetched_at
         FROM prospects p
         LEFT JOIN prospect_intelligence i ON i.domain = p.domain AND i.source = $1
        WHERE p.domain IS NOT NULL`,
      [INTEL_SOURCE],
    );
    const waiting = await waitingForDomain(ctx.db, input.rows ?? []);
    const known = new Set(rows.map((r) => r.domain));
    const fresh: string[] = [];
    const stale: { domain: string; prospect_id: string; at: number }[] = [];
    const isFresh = (at: Date | string) => new Date(at) >= freshAfter;
    const news: { domain: string; prospect_id: string | null }[] = [];
    for (const r of rows) {
      if (r.fetched_at === null) news.push({ domain: r.domain, prospect_id: r.id });
      else if (isFresh(r.fetched_at)) fresh.push(r.domain);
      else stale.push({ domain: r.domain, prospect_id: r.id, at: new Date(r.fetched_at).getTime() });
    }
    for (const row of input.rows ?? []) {
      if (row.problem || !row.domain || known.has(row.domain)) continue;
      known.add(row.domain);
      news.push({ domain: row.domain, prospect_id: null });
    }
    news.sort((a, b) => a.domain.localeCompare(b.domain));
    const day = (d: Date) => d.toISOString().slice(0, 10);
    ctx.note(`${news.length} new${newsOrigin(news, input.rows)}, ${stale.length} stale (to enrich), ${fresh.length} fresh (skipped: enriched since ${day(freshAfter)})${waiting ? `, ${waiting} waiting for a domain (skipped: enrichment needs one)` : ''}; data from before ${day(dropBefore)} is dropped`);
    stale.sort((a, b) => a.at - b.at || a.domain.localeCompare(b.domain));
    return {
      total: news.length + stale.length + fresh.length,
      new: news.length,
      stale: stale.length,
      fresh: fresh.length,
      waiting_for_domain: waiting,
      fresh_after: freshAfter.toISOString(),
      drop_before: dropBefore.toISOString(),
      to_enrich: [...news.map((n) => ({ ...n, reason: 'new' })), ...stale.map(({ domain, prospect_id }) => ({ domain, prospect_id, reason: 'stale' }))],
    };
  },
});

/** Where the new ones come from, when the census is given this import's rows: " (18 from this import, 4 saved earlier)". */
function newsOrigin(news: { domain: string }[], rows: { domain: string | null; problem: string | null }[] | undefined): string {
  if (!rows) return '';
  const imported = new Set(rows.filter((r) => !r.problem && r.domain).map((r) => r.domain));
  const fromImport = news.filter((n) => imported.has(n.domain)).length;
  const earlier = news.length - fromImport;
  return ` (${fromImport} from this import${earlier ? `, ${earlier} saved earlier and never enriched` : ''})`;
}

/**
 * Prospects known by their LinkedIn profile alone (no search data, no report until a row
 * brings their domain): those saved, and the rows given (a dry run's) whose profile is not
 * saved yet, each profile once.
 */
export async function waitingForDomain(db: Queryable, rows: { domain: string | null; linkedin_url?: string | null; problem: string | null }[]): Promise<number> {
  const read = rows.filter((r) => !r.problem && !r.domain && r.linkedin_url).map((r) => r.linkedin_url!);
  const saved = await db.query<{ linkedin_url: string; waiting: boolean }>(
    'SELECT linkedin_url, domain IS NULL AS waiting FROM prospects WHERE domain IS NULL OR linkedin_url = ANY($1::text[])',
    [read],
  );
  const known = new Set(saved.map((r) => r.linkedin_url));
  return saved.filter((r) => r.waiting).length + new Set(read.filter((url) => !known.has(url))).size;
}
