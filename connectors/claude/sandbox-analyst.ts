/**
 * What the sandbox writes when it is asked to analyse a company's search data: it reads the
 * JSON block of the prompt (the numbers a real analyst would read) and writes sentences that
 * cite them, so a sample report reads like an analysis of that company. Only the properties
 * it knows are written here; the generator fills any other, and a prompt without search
 * data gets the generator's answer whole.
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Row = Record<string, Json>;

interface SearchData {
  company: string;
  domain: string;
  overview: Row | null;
  spyfu: Row | null;
  keywords: Row[];
  competitors: Row[];
  paid: Row[];
  valuable: Row[];
}

/** The search data a prompt carries in its ```json block, or null when it has none. */
export function searchDataIn(prompt: string): SearchData | null {
  const block = /```json\s*\n([\s\S]*?)\n```/.exec(prompt);
  if (!block) return null;
  let data: unknown;
  try {
    data = JSON.parse(block[1]!);
  } catch {
    return null;
  }
  if (!isRow(data) || typeof data.domain !== 'string' || !Array.isArray(data.top_keywords)) return null;
  const rows = (v: Json | undefined) => (Array.isArray(v) ? v.filter(isRow) : []);
  return {
    company: typeof data.company === 'string' && data.company ? data.company : data.domain,
    domain: data.domain,
    overview: isRow(data.overview) ? data.overview : null,
    spyfu: isRow(data.spyfu_stats) ? data.spyfu_stats : null,
    keywords: rows(data.top_keywords),
    competitors: rows(data.competitors),
    paid: rows(data.paid_keywords),
    valuable: rows(data.valuable_keywords),
  };
}

type Writer = (d: SearchData) => Json;

/** The analysis properties the sandbox writes from the data, by name. */
const WRITERS: Record<string, Writer> = {
  headline: (d) => {
    const near = nearTopThree(d)[0];
    if (near) return `"${str(near.keyword)}" has ${count(num(near.volume))} searches a month and ${d.company} ranks ${ordinal(num(near.position))}: its largest single gain in organic traffic.`;
    const rival = d.competitors[0];
    if (rival) return `${str(rival.domain)} gets ${ratio(num(rival.organic_traffic), num(d.overview?.organicTraffic))} the organic traffic of ${d.company} on ${count(num(rival.common_keywords))} shared keywords.`;
    return `${d.company} has little search visibility to build on: ${count(num(d.overview?.organicKeywords))} ranking keywords.`;
  },
  executive_summary: (d) => {
    const o = d.overview;
    const rival = d.competitors[0];
    const parts = [
      `${d.company} ranks for ${count(num(o?.organicKeywords))} keywords that bring about ${count(num(o?.organicTraffic))} organic visits a month, worth ${money(num(o?.organicCost))} in ad terms.`,
      num(o?.paidCost) ? `It spends an estimated ${money(num(o?.paidCost))} a month on Google Ads across ${count(num(o?.paidKeywords))} keywords.` : 'It buys no measurable Google Ads traffic.',
      rival ? `${str(rival.domain)}, its closest rival, shares ${count(num(rival.common_keywords))} keywords and gets ${count(num(rival.organic_traffic))} visits.` : '',
      firstMover(d),
    ];
    return parts.filter(Boolean).join(' ');
  },
  traffic_commentary: (d) => {
    const top = d.keywords.slice(0, 3);
    const share = top.reduce((s, k) => s + num(k.traffic_percent), 0);
    const risers = d.keywords.filter((k) => num(k.previous_position) > num(k.position) && num(k.position) > 0).length;
    const fallers = d.keywords.filter((k) => num(k.previous_position) > 0 && num(k.previous_position) < num(k.position)).length;
    if (!top.length) return `SEMrush finds no organic keywords for ${d.domain} in this database.`;
    return `The top ${top.length} keywords (${top.map((k) => `"${str(k.keyword)}"`).join(', ')}) bring ${pct(share)} of organic traffic. Of the top ${d.keywords.length}, ${risers} moved up and ${fallers} moved down since the previous month.`;
  },
  competitor_commentary: (d) => {
    const [a, b] = d.competitors;
    if (!a) return `SEMrush lists no organic competitors for ${d.domain}.`;
    const mine = num(d.overview?.organicTraffic);
    const vs = (c: Row) => `${str(c.domain)} (${count(num(c.organic_traffic))} visits, ${count(num(c.common_keywords))} keywords in common)`;
    const lead = num(a.organic_traffic) > mine ? `${str(a.domain)} gets ${ratio(num(a.organic_traffic), mine)} the organic traffic of ${d.company}.` : `${d.company} out-ranks ${str(a.domain)} on organic traffic.`;
    return `The closest competitors are ${vs(a)}${b ? ` and ${vs(b)}` : ''}. ${lead}`;
  },
  paid_search_commentary: (d) => {
    const spend = num(d.overview?.paidCost) || num(d.spyfu?.monthlyBudget);
    const top = [...d.paid].sort((x, y) => num(y.traffic_cost) - num(x.traffic_cost))[0];
    if (!spend || !top) return `${d.company} runs no measurable paid search; competitors buying its keywords meet no resistance.`;
    return `Estimated spend is ${money(spend)} a month; the costliest keyword is "${str(top.keyword)}" at ${money(num(top.cpc), 2)} a click (${money(num(top.traffic_cost))} a month). ${num(top.position) > 2 ? 'Its ad sits below the top two positions, so much of that spend buys few clicks.' : 'Its ads hold the top positions.'}`;
  },
  opportunities: (d) => {
    const items: Row[] = nearTopThree(d).slice(0, 3).map((k) => ({
      title: `Reach page one's top three for "${str(k.keyword)}"`,
      detail: `"${str(k.keyword)}" has ${count(num(k.volume))} searches a month and ${d.company} ranks ${ordinal(num(k.position))}: the top three positions take most of the clicks.`,
      impact: num(k.volume) > 5000 ? 'high' : 'medium',
    }));
    const rival = d.competitors[0];
    if (rival) items.push({ title: `Close the gap on ${str(rival.domain)}`, detail: `${str(rival.domain)} ranks for ${count(num(rival.organic_keywords))} keywords; ${count(num(rival.common_keywords))} of them are shared, the rest are open ground.`, impact: 'medium' });
    const valuable = d.valuable[0];
    if (valuable) items.push({ title: `Defend "${str(valuable.keyword)}"`, detail: `SpyFu values its ${count(num(valuable.clicks))} organic clicks at ${money(num(valuable.cpc), 2)} each, the most of any keyword.`, impact: 'low' });
    while (items.length < 3) items.push({ title: 'Grow the keyword base', detail: `${d.company} ranks for ${count(num(d.overview?.organicKeywords))} keywords; each new page that ranks adds traffic.`, impact: 'low' });
    return items.slice(0, 6);
  },
  actions: (d) => {
    const k = d.keywords.find((x) => num(x.position) >= 4) ?? d.keywords[0];
    const rival = d.competitors[0];
    return [
      { action: `Rewrite the page ranking for "${str(k?.keyword ?? d.domain)}" around the searcher's question`, why: k && num(k.position) ? `It ranks ${ordinal(num(k.position))} for ${count(num(k.volume))} searches a month.` : 'It is the search its buyers make most.', effort: 'low' },
      { action: rival ? `Audit the ${count(num(rival.common_keywords))} keywords shared with ${str(rival.domain)}` : 'List the keywords your buyers search for', why: 'It shows where a page exists but loses, and where none exists yet.', effort: 'medium' },
      { action: num(d.overview?.paidCost) ? 'Move ad budget from low-position ads to keywords that convert' : 'Test a small Google Ads budget on the highest-value keyword', why: num(d.overview?.paidCost) ? `Paid search costs ${money(num(d.overview?.paidCost))} a month today.` : 'A few hundred dollars shows which searches convert before pages rank for them.', effort: 'medium' },
    ];
  },
};

/** The properties of `schema` the sandbox can write from `data`, each cut to the schema's maxLength. */
export function writeAnalysis(schema: Record<string, unknown>, data: SearchData): Record<string, Json> {
  const properties = isRow(schema.properties as Json) ? (schema.properties as Record<string, Record<string, unknown>>) : {};
  const out: Record<string, Json> = {};
  for (const [name, property] of Object.entries(properties)) {
    const write = WRITERS[name];
    if (write) out[name] = fit(write(data), property);
  }
  return out;
}

/** A value cut to its schema's lengths and counts, so the answer stays valid. */
function fit(value: Json, schema: Record<string, unknown>): Json {
  if (typeof value === 'string' && typeof schema.maxLength === 'number' && value.length > schema.maxLength) return `${value.slice(0, schema.maxLength - 1)}…`;
  if (Array.isArray(value)) {
    const items = (schema.items ?? {}) as Record<string, unknown>;
    const max = typeof schema.maxItems === 'number' ? schema.maxItems : value.length;
    return value.slice(0, max).map((v) => fit(v, items));
  }
  if (isRow(value) && isRow(schema.properties as Json)) {
    const props = schema.properties as Record<string, Record<string, unknown>>;
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, props[k] ? fit(v, props[k]) : v]));
  }
  return value;
}

/** Keywords on the first two pages but below the top three, most searched first: the nearest gains. */
function nearTopThree(d: SearchData): Row[] {
  return d.keywords.filter((k) => num(k.position) >= 4 && num(k.position) <= 20).sort((x, y) => num(y.volume) - num(x.volume));
}

function firstMover(d: SearchData): string {
  const near = nearTopThree(d).find((k) => num(k.position) <= 10);
  return near ? `First, push "${str(near.keyword)}" (${count(num(near.volume))} searches a month) from position ${num(near.position)} into the top three.` : 'First, build pages for the searches its buyers make.';
}

function isRow(v: Json | unknown): v is Row {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
const num = (v: Json | undefined): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const str = (v: Json | undefined): string => (typeof v === 'string' ? v : String(v ?? ''));
const count = (n: number) => new Intl.NumberFormat('en-US', { notation: n >= 100_000 ? 'compact' : 'standard', maximumFractionDigits: 1 }).format(Math.round(n));
const money = (n: number, digits = 0) => `$${new Intl.NumberFormat('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(n)}`;
const pct = (n: number) => `${n.toFixed(n < 10 ? 1 : 0)}%`;
const ordinal = (n: number) => `${n}${n % 100 >= 11 && n % 100 <= 13 ? 'th' : (['th', 'st', 'nd', 'rd'][n % 10] ?? 'th')}`;
const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(1)}x` : 'far more than');
