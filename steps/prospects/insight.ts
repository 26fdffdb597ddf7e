/**
 * What outreach says about a prospect, the same on every channel: the name it greets and the
 * one sentence about its search (a teaser's insight, a LinkedIn note's).
 */

/** The first word of a contact's name, as templates greet them (`first_name`). */
export const firstName = (name: string | null) => (name ?? '').trim().split(/\s+/)[0] ?? '';

/** One sentence about the prospect's search, from the figures its category came from. */
export function insightOf(category: string | null, metrics: Record<string, unknown> | null, options: { nameRival?: boolean } = {}): string {
  const m = metrics ?? {};
  const num = (k: string) => (typeof m[k] === 'number' ? (m[k] as number) : undefined);
  const named = typeof m.top_competitor === 'string' ? m.top_competitor : undefined;
  // The rival is a domain: where no link may show (a LinkedIn note), it goes unnamed.
  const rival = named && options.nameRival === false ? 'your closest search competitor' : named;
  const Rival = rival ? rival.charAt(0).toUpperCase() + rival.slice(1) : undefined;
  const gap = num('competitor_gap');
  const paid = num('paid_share');
  const page2 = num('page2_keywords');
  const trend = num('traffic_trend');
  if (category === 'competitor-ahead' && rival && gap) return `${named === rival ? rival : Rival} gets about ${Math.round(gap * 10) / 10}x the organic search traffic, mostly on searches you could rank for.`;
  if (category === 'paid-heavy' && paid !== undefined) return `About ${Math.round(paid * 100)}% of the search clicks reach you through ads, and several of those searches are within reach organically.`;
  if (category === 'striking-distance' && page2) return `${page2} of your keywords sit on page two, where a small push moves them onto page one.`;
  if (category === 'traffic-falling' && trend !== undefined) return `Organic visits fell about ${Math.round(-trend * 100)}% over three months, and the drop is concentrated in a handful of searches.`;
  if (rival) return named === rival ? `${rival} is the site you share the most searches with, and the report shows where each of you wins.` : 'The report shows the site you share the most searches with, and where each of you wins.';
  return 'The report shows the searches that bring you visitors now, and the ones within reach.';
}
