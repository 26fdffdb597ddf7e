import { firesBetween } from '../../daemon/scheduler.ts';
import type { Database } from '../../db/connect.ts';

/**
 * The LinkedIn week's prospects, in the week's own database: the latest week weekly-enrich
 * chose in the demo's database, with those prospects and their Sunday reports as they are
 * there; then, to make the configured week, prospects of the demo's own, ranked after them,
 * with no report yet (linkedin-daily makes one when they accept).
 */

export interface WeekSelection {
  /** ISO week, as linkedin.plan_invitations reads the selection ("2026-W50"). */
  week: string;
  /** Its Monday, YYYY-MM-DD. */
  monday: string;
  /** How many weekly-enrich chose. */
  prospects: number;
}

/** Copies rows as they are, every column (both databases have the same migrations). */
async function copyRows(from: Database, to: Database, table: string, where: string, params: unknown[]): Promise<number> {
  const rows = await from.query(`SELECT * FROM ${table} WHERE ${where}`, params);
  if (rows.length) await to.query(`INSERT INTO ${table} SELECT * FROM json_populate_recordset(NULL::${table}, $1::json)`, [JSON.stringify(rows)]);
  return rows.length;
}

/** The latest week weekly-enrich chose, copied with its prospects and reports; with none, the coming week, empty. */
export async function copySelection(from: Database, to: Database, tz: string): Promise<WeekSelection> {
  const [latest] = await from.query<{ week: string }>('SELECT week FROM linkedin_selections ORDER BY week DESC LIMIT 1');
  if (!latest) {
    // Seven days after now hold one Monday 00:00: the coming one, as weekly-enrich would choose for.
    const monday = firesBetween('0 0 * * 1', tz, new Date(), new Date(Date.now() + 7 * 86_400_000), 1)[0]!;
    const [row] = await to.query<{ week: string; monday: string }>(`SELECT to_char(d, 'IYYY-"W"IW') AS week, to_char(d, 'YYYY-MM-DD') AS monday FROM (SELECT $1::date AS d) AS x`, [
      new Intl.DateTimeFormat('en-CA', { timeZone: tz }).format(monday),
    ]);
    return { week: row!.week, monday: row!.monday, prospects: 0 };
  }
  const chosen = 'id IN (SELECT prospect_id FROM linkedin_selections WHERE week = $1)';
  await copyRows(from, to, 'prospects', chosen, [latest.week]);
  await copyRows(from, to, 'generated_reports', `prospect_id IN (SELECT prospect_id FROM linkedin_selections WHERE week = $1)`, [latest.week]);
  const prospects = await copyRows(from, to, 'linkedin_selections', 'week = $1', [latest.week]);
  const [row] = await to.query<{ monday: string }>(`SELECT to_char(to_date($1, 'IYYY-"W"IW'), 'YYYY-MM-DD') AS monday`, [latest.week]);
  return { week: latest.week, monday: row!.monday, prospects };
}

const FIRST = ['Ada', 'Ben', 'Chloe', 'Dev', 'Elif', 'Finn', 'Grace', 'Hugo', 'Isla', 'Jonas', 'Kira', 'Leo', 'Maya'];
const LAST = ['Moreau', 'Okafor', 'Lindqvist', 'Patel', 'Rossi', 'Novak', 'Byrne', 'Tanaka', 'Silva', 'Weber', 'Costa'];
const NAMES = ['Alder', 'Birch', 'Cobalt', 'Dune', 'Ember', 'Fjord', 'Granite', 'Harbour', 'Indigo', 'Juniper', 'Kestrel', 'Lumen'];
const TRADES = ['Analytics', 'Bakery', 'Clinic', 'Dental', 'Fitness', 'Legal', 'Optics', 'Roofing', 'Travel'];

/** The demo's own prospect n: a company, its owner's LinkedIn profile, and page-two keywords for the note's insight. */
function demoProspect(n: number) {
  const company = `${NAMES[n % NAMES.length]} ${TRADES[Math.floor(n / NAMES.length) % TRADES.length]}`;
  const [first, last] = [FIRST[n % FIRST.length]!, LAST[(n * 7) % LAST.length]!];
  const slug = (s: string) => s.toLowerCase().replace(/[^a-z0-9]+/g, '-');
  return {
    domain: `${slug(company)}.example`,
    company_name: company,
    contact_name: `${first} ${last}`,
    linkedin_url: `https://www.linkedin.com/in/${slug(`${first}-${last}-${n + 1}`)}/`,
    category: 'striking-distance',
    metrics: { organic_traffic: 2000 + ((n * 379) % 9000), page2_keywords: 4 + ((n * 5) % 17), competitor_gap: 1 + (n % 3), paid_share: 0.1 },
  };
}

/** Adds `n` of the demo's own prospects to the week, ranked after those chosen. */
export async function topUpSelection(to: Database, week: string, n: number): Promise<number> {
  if (n <= 0) return 0;
  const rows = Array.from({ length: n }, (_, i) => demoProspect(i));
  const [last] = await to.query<{ rank: number }>('SELECT coalesce(max(rank), 0)::int AS rank FROM linkedin_selections WHERE week = $1', [week]);
  const added = await to.query<{ id: string; domain: string }>(
    `INSERT INTO prospects (domain, company_name, contact_name, linkedin_url, category, metrics, source)
     SELECT r.domain, r.company_name, r.contact_name, r.linkedin_url, r.category, r.metrics, 'demo-linkedin' FROM json_populate_recordset(NULL::prospects, $1::json) AS r
     ON CONFLICT DO NOTHING RETURNING id::text, domain`,
    [JSON.stringify(rows)],
  );
  const place = new Map(rows.map((r, i) => [r.domain, i]));
  const ids = added.sort((a, b) => place.get(a.domain)! - place.get(b.domain)!).map((a) => a.id);
  await to.query(
    `INSERT INTO linkedin_selections (week, prospect_id, rank, score, selected_at)
     SELECT $1, id, $2 + n, 0, now() FROM unnest($3::uuid[]) WITH ORDINALITY AS a(id, n)`,
    [week, last?.rank ?? 0, ids],
  );
  return ids.length;
}
