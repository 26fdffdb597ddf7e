/**
 * Sample data for the cold email channel's templates (pipelines/templates/emails/*.mjml): the
 * shape steps/email/compose.ts documents, with realistic figures for each prospect category.
 */

export const CATEGORIES = ['traffic-falling', 'competitor-ahead', 'paid-heavy', 'striking-distance', 'growth'] as const;
export type Category = (typeof CATEGORIES)[number];

/** Two body variants of a teaser per category. */
export const TEASERS = CATEGORIES.flatMap((c) => [`teaser-${c}-a`, `teaser-${c}-b`]);
/** The nudges sent in the teaser's thread, and the email that delivers the report after a click. */
export const FOLLOW_UPS = ['follow-up-1', 'follow-up-2', 'report-ready'];
export const SHIPPED_TEMPLATES = [...TEASERS, ...FOLLOW_UPS];

const REASONS: Record<Category, { reason: string; insight: string; metrics: Record<string, number> }> = {
  'traffic-falling': {
    reason: 'Organic visits to northfieldroofing.com fell by about 31% between March and August.',
    insight: 'Most of the drop comes from three service pages that slipped from the first page for "flat roof repair".',
    metrics: { organic_traffic: 8200, organic_traffic_6m_ago: 11900, change_pct: -31 },
  },
  'competitor-ahead': {
    reason: 'Summit Roofing now ranks above you for 41 of the 60 local roofing searches you both appear in.',
    insight: 'Their lead comes mostly from city pages, which northfieldroofing.com does not have yet.',
    metrics: { shared_keywords: 60, competitor_ahead_on: 41 },
  },
  'paid-heavy': {
    reason: 'About 70% of the visits that search engines send to northfieldroofing.com are paid clicks.',
    insight: 'Several of the terms you pay for most are ones where a page of yours already sits just off the first page.',
    metrics: { paid_share_pct: 70, monthly_ad_spend_usd: 4100 },
  },
  'striking-distance': {
    reason: 'Northfield Roofing sits in positions 11 to 15 for 18 searches that bring in steady local demand.',
    insight: 'The closest one, "roof leak repair denver", is at position 11 with around 900 searches a month.',
    metrics: { keywords_11_20: 18, best_position: 11 },
  },
  growth: {
    reason: 'Organic visits to northfieldroofing.com grew by about 24% over the last six months.',
    insight: 'Most of the growth comes from the new gutter pages, and two related topics are still open.',
    metrics: { organic_traffic: 14800, change_pct: 24 },
  },
};

/** The category a template is written for (follow-ups take any; they use the first). */
export function categoryOf(template: string): Category {
  return CATEGORIES.find((c) => template.startsWith(`teaser-${c}-`)) ?? 'traffic-falling';
}

/** Subjects as a campaign would give them: Liquid, rendered per prospect. */
export function subjectOf(template: string): string {
  if (template === 'report-ready') return "Your report on {{ prospect.domain }}'s search visibility";
  if (template.startsWith('follow-up')) return 'Re: {{ prospect.company_name }} in search';
  return '{{ prospect.company_name }} in search';
}

export interface SampleOptions {
  company_name?: string;
  contact_name?: string;
  tracking_pixel?: string;
}

/** The data a template sees, for one prospect of the template's category. */
export function sampleEmailData(template: string, options: SampleOptions = {}): Record<string, unknown> {
  const category = categoryOf(template);
  const contact = options.contact_name ?? 'Maria Lopez';
  const { reason, insight, metrics } = REASONS[category];
  return {
    prospect: {
      company_name: options.company_name ?? 'Northfield Roofing',
      contact_name: contact,
      first_name: contact.trim().split(/\s+/)[0] ?? '',
      domain: 'northfieldroofing.com',
      category,
      category_reason: reason,
      metrics,
    },
    insight,
    links: {
      report: 'https://reports.intel-mail-one.example/r/Q2hhbmdlZCBieSB0ZXN0cw-northfield',
      honeypot: 'https://reports.intel-mail-one.example/c/aG9uZXlwb3QtbGluay10b2tlbg',
      unsubscribe: 'https://reports.intel-mail-one.example/u/dW5zdWJzY3JpYmUtdG9rZW4',
    },
    business: { name: 'Intel Mail One LLC', address: '1200 Larimer Street, Suite 400, Denver, CO 80204, USA' },
    sender: { name: 'Ana Ruiz', email: 'ana@intel-mail-one.example' },
    ...(options.tracking_pixel !== undefined ? { tracking_pixel: options.tracking_pixel } : {}),
  };
}
