import { type Static, Type } from '@sinclair/typebox';
import { Cron } from 'croner';
import { configSection, defineStep, DURATION_PATTERN, type EngineConfig, evaluate, NonRetriableError, parseExpression, type Queryable, type StepContext } from '../../engine/sdk.ts';
import type { Metrics } from '../prospects/categorise.ts';
import { INTEL_SOURCE, waitingForDomain } from '../prospects/census.ts';

/**
 * `linkedin.select`: the week's LinkedIn prospects. Among prospects with a LinkedIn profile
 * and search data who were never selected before (so never contacted), each gets the score
 * of the config's `linkedin.score` expression over its metrics; the best `linkedin.weekly`
 * are recorded in linkedin_selections for the week, which makes the choice once per week.
 * A dry run writes nothing, so the prospects its import would add are not in the database:
 * given the rows just read, it counts those with a profile as candidates after the scored
 * ones (unscored until enriched), so the reports it would make are estimated too. A prospect
 * known by its profile alone is not eligible until it has a domain (its report is made from
 * the domain's search data): the note counts those waiting.
 */

export const LinkedinSchema = Type.Object(
  {
    weekly: Type.Integer({ minimum: 1, description: 'Connection requests a week: how many prospects are selected (and have a report made) each Sunday.' }),
    score: Type.String({
      minLength: 1,
      description: 'Bare expression over metrics (see prospects.categorise) and prospect (company_name, has_email): higher is better. Ties go to the domain first in order.',
    }),
    account_quotas: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        description:
          'The quotas a LinkedIn account\'s launches go under (default: linkedin-connect and linkedin-message, those configured). An expired session or a disconnection pauses them all for the account, and while any is paused nothing is launched on it.',
      }),
    ),
    health: Type.Optional(
      Type.Object(
        {
          acceptance_floor: Type.Optional(
            Type.Number({ minimum: 0, maximum: 1, description: "Below this share of invitations accepted (default 0.3) the account's daily invitations drop to throttle_to of the volume." }),
          ),
          count_after: Type.Optional(
            Type.String({
              pattern: DURATION_PATTERN,
              description: 'An invitation counts in the acceptance rate once it is this old (default "5d"): the rate is over those sent in the 7 days before that, so the recent ones, not yet answered, do not pull it down.',
            }),
          ),
          min_sample: Type.Optional(Type.Integer({ minimum: 1, description: 'The rate counts from this many invitations in its 7 days (default 20): a new account is not throttled on two.' })),
          throttle_to: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: "The share of the daily volume an account below the floor sends (default 0.5)." })),
          reconnect_start: Type.Optional(
            Type.Number({ minimum: 0, maximum: 1, description: 'After a reconnection (a session-expiry pause resumed) the daily volume restarts at this share (default 0.6) ...' }),
          ),
          reconnect_step: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1, description: '... and gains this share each day after, up to the full volume (default 0.1: 60%, 70% ... 100% on the fifth day).' })),
          withdraw_after: Type.Optional(
            Type.String({ pattern: DURATION_PATTERN, description: 'linkedin.withdraw withdraws invitations still pending this long after they were sent (default "21d").' }),
          ),
        },
        { additionalProperties: false, description: "A LinkedIn account's health steers its volume: its acceptance rate, a reconnection, old pending invitations. Every key optional." },
      ),
    ),
  },
  { additionalProperties: false, description: 'Weekly LinkedIn outreach: volume and who comes first.' },
);
export interface LinkedinConfig {
  weekly: number;
  score: string;
  account_quotas?: string[];
  health?: {
    acceptance_floor?: number;
    count_after?: string;
    min_sample?: number;
    throttle_to?: number;
    reconnect_start?: number;
    reconnect_step?: number;
    withdraw_after?: string;
  };
}

/** ISO week ("2026-W49") of the week that starts at the next Monday 00:00 in `tz`. */
export function comingWeek(now: Date, tz: string): string {
  const monday = new Cron('0 0 * * 1', { timezone: tz, paused: true }).nextRun(now)!;
  const [y, m, d] = new Intl.DateTimeFormat('en-CA', { timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit' }).format(monday).split('-').map(Number) as [number, number, number];
  // ISO week: the week with the year's first Thursday is week 1.
  const date = new Date(Date.UTC(y, m - 1, d));
  const thursday = new Date(date.getTime() + 3 * 86_400_000);
  const yearStart = Date.UTC(thursday.getUTCFullYear(), 0, 1);
  const week = Math.floor((thursday.getTime() - yearStart) / (7 * 86_400_000)) + 1;
  return `${thursday.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}

export interface Candidate {
  prospect_id: string;
  domain: string;
  company_name: string | null;
  contact_name: string | null;
  linkedin_url: string;
  score: number;
}

function settings(config: EngineConfig): LinkedinConfig {
  const linkedin = configSection<LinkedinConfig>(config, 'linkedin');
  if (!linkedin) throw new NonRetriableError('no linkedin section in the config: set linkedin.weekly and linkedin.score');
  return linkedin;
}

/** Every eligible prospect with its score, best first. */
export async function scoreCandidates(db: Queryable, config: EngineConfig): Promise<Candidate[]> {
  const { score } = settings(config);
  let expression: ReturnType<typeof parseExpression>;
  try {
    expression = parseExpression(score);
  } catch (err) {
    throw new NonRetriableError(`linkedin.score: ${(err as Error).message}`);
  }
  // Metrics are stored with the category (small); the search data itself is not read here.
  const rows = await db.query<{ id: string; domain: string; company_name: string | null; contact_name: string | null; email: string | null; linkedin_url: string; metrics: Metrics | string }>(
    `SELECT p.id, p.domain, p.company_name, p.contact_name, p.email, p.linkedin_url, p.metrics
       FROM prospects p
      WHERE p.linkedin_url IS NOT NULL AND p.domain IS NOT NULL AND p.metrics IS NOT NULL
        AND EXISTS (SELECT 1 FROM prospect_intelligence i WHERE i.domain = p.domain AND i.source = $1)
        AND NOT EXISTS (SELECT 1 FROM linkedin_selections s WHERE s.prospect_id = p.id)`,
    [INTEL_SOURCE],
  );
  const scored = rows.map((r) => {
    const metrics = typeof r.metrics === 'string' ? (JSON.parse(r.metrics) as Metrics) : r.metrics;
    const scope = { metrics, prospect: { company_name: r.company_name, has_email: r.email !== null } };
    const value = evaluate(expression, scope, { now: () => new Date(0) });
    if (typeof value !== 'number' || !Number.isFinite(value)) throw new NonRetriableError(`linkedin.score gave ${JSON.stringify(value)} for ${r.domain}, not a number`);
    return { prospect_id: r.id, domain: r.domain, company_name: r.company_name, contact_name: r.contact_name, linkedin_url: r.linkedin_url, score: Math.round(value * 1000) / 1000 };
  });
  return scored.sort((a, b) => b.score - a.score || a.domain.localeCompare(b.domain));
}

const Selected = Type.Object(
  {
    prospect_id: Type.String(),
    domain: Type.String(),
    company_name: Type.Union([Type.String(), Type.Null()]),
    contact_name: Type.Union([Type.String(), Type.Null()]),
    linkedin_url: Type.String(),
    score: Type.Number(),
    report_id: Type.Union([Type.String(), Type.Null()], { description: 'The report made for the prospect this week, once made.' }),
  },
  { additionalProperties: false },
);

async function selectionOf(db: Queryable, week: string): Promise<Static<typeof Selected>[]> {
  const rows = await db.query<Static<typeof Selected> & { score: number | string }>(
    `SELECT s.prospect_id, p.domain, p.company_name, p.contact_name, p.linkedin_url, s.score, s.report_id
       FROM linkedin_selections s JOIN prospects p ON p.id = s.prospect_id
      WHERE s.week = $1 ORDER BY s.rank`,
    [week],
  );
  return rows.map((r) => ({ ...r, score: Number(r.score) }));
}

export const linkedinSelect = defineStep({
  type: 'linkedin.select',
  description: 'Chooses the coming week\'s LinkedIn prospects (config linkedin.weekly, by linkedin.score) among never-selected ones with a profile and search data.',
  input: Type.Object(
    {
      count: Type.Optional(Type.Integer({ minimum: 0, description: 'How many (default: linkedin.weekly from the config).' })),
      rows: Type.Optional(
        Type.Array(
          Type.Object({
            domain: Type.Union([Type.String(), Type.Null()]),
            company_name: Type.Optional(Type.Union([Type.String(), Type.Null()])),
            contact_name: Type.Optional(Type.Union([Type.String(), Type.Null()])),
            linkedin_url: Type.Union([Type.String(), Type.Null()]),
            problem: Type.Union([Type.String(), Type.Null()]),
          }),
          { description: 'Rows of prospects.read: in a dry run those not saved yet, with a LinkedIn profile, count as candidates.' },
        ),
      ),
    },
    { additionalProperties: false },
  ),
  output: Type.Object(
    {
      week: Type.String({ description: 'ISO week, e.g. 2026-W49.' }),
      eligible: Type.Integer(),
      waiting_for_domain: Type.Integer({ description: 'Never-selected prospects with a profile but no domain yet: not eligible until they have one.' }),
      selected: Type.Array(Selected),
      pending: Type.Array(Selected, { description: 'The selected prospects whose report is not made yet (all of them the first time).' }),
    },
    { additionalProperties: false },
  ),
  effect: {
    kind: () => 'db.write',
    transactional: true,
    async plan(ctx, input) {
      const week = await choose(ctx, input.count, input.rows);
      const csv = ['rank,domain,company,score', ...week.selected.map((s, i) => `${i + 1},${s.domain},"${(s.company_name ?? '').replace(/"/g, '""')}",${s.score}`)];
      return {
        summary: `LinkedIn ${week.week}: ${week.selected.length} of ${week.eligible} eligible prospects${week.before ? ' (already chosen)' : ''}`,
        output: outputOf(week),
        artifacts: [{ name: 'linkedin-selection.csv', content: `${csv.join('\n')}\n` }],
      };
    },
  },
  async run(ctx, input) {
    const week = await choose(ctx, input.count);
    if (!week.before && week.selected.length) {
      await ctx.db.query(
        `INSERT INTO linkedin_selections (week, prospect_id, rank, score, run_id, selected_at)
         SELECT $1, s.prospect_id, s.rank, s.score, $2, $3
           FROM unnest($4::uuid[], $5::int[], $6::float8[]) AS s(prospect_id, rank, score)
         ON CONFLICT DO NOTHING`,
        [week.week, ctx.run.id, ctx.clock.now(), week.selected.map((s) => s.prospect_id), week.selected.map((_, i) => i + 1), week.selected.map((s) => s.score)],
      );
    }
    return outputOf(week);
  },
});

interface Week {
  week: string;
  /** The week was chosen by an earlier run: its selection is returned as it was. */
  before: boolean;
  eligible: number;
  waitingForDomain: number;
  selected: Static<typeof Selected>[];
}

type ReadRow = { domain: string | null; company_name?: string | null; contact_name?: string | null; linkedin_url: string | null; problem: string | null };

/**
 * Rows of a dry run's import with a profile that the run would make eligible, as candidates
 * after every scored one: new prospects, and known ones not scored yet (no search data until
 * this run enriches them). Prospects chosen in an earlier week are not chosen again.
 */
async function unsavedCandidates(ctx: StepContext, rows: ReadRow[], scored: readonly Candidate[]): Promise<Candidate[]> {
  const fresh = rows.filter((r): r is ReadRow & { domain: string; linkedin_url: string } => !r.problem && r.domain !== null && r.linkedin_url !== null);
  if (!fresh.length) return [];
  const chosenBefore = await ctx.db.query<{ domain: string }>(
    'SELECT p.domain FROM prospects p JOIN linkedin_selections s ON s.prospect_id = p.id WHERE p.domain = ANY($1::text[])',
    [fresh.map((r) => r.domain)],
  );
  const counted = new Set([...scored.map((c) => c.domain), ...chosenBefore.map((k) => k.domain)]);
  return fresh
    .filter((r) => !counted.has(r.domain))
    .sort((a, b) => a.domain.localeCompare(b.domain))
    .map((r) => ({ prospect_id: `(dry run) ${r.domain}`, domain: r.domain, company_name: r.company_name ?? null, contact_name: r.contact_name ?? null, linkedin_url: r.linkedin_url, score: 0 }));
}

/** The coming week's selection: the one recorded, or the best-scored candidates now. Notes it on the run. */
async function choose(ctx: StepContext, count: number | undefined, rows: ReadRow[] = []): Promise<Week> {
  const week = comingWeek(ctx.clock.now(), ctx.config.business?.timezone ?? 'UTC');
  const chosen = await selectionOf(ctx.db, week);
  if (chosen.length) {
    const pending = chosen.filter((s) => !s.report_id).length;
    ctx.note(`LinkedIn ${week}: chosen before (${chosen.length} prospects, ${pending} without a report yet)`);
    return { week, before: true, eligible: chosen.length, waitingForDomain: 0, selected: chosen };
  }
  const scored = await scoreCandidates(ctx.db, ctx.config);
  const unsaved = ctx.run.dryRun ? await unsavedCandidates(ctx, rows, scored) : [];
  const candidates = [...scored, ...unsaved];
  const selected = candidates.slice(0, count ?? settings(ctx.config).weekly).map((c) => ({ ...c, report_id: null }));
  const waiting = await waitingForDomain(ctx.db, ctx.run.dryRun ? rows : []);
  ctx.note(noteOf(week, selected, candidates.length, unsaved.length, waiting));
  return { week, before: false, eligible: candidates.length, waitingForDomain: waiting, selected };
}

const outputOf = (w: Week) => ({ week: w.week, eligible: w.eligible, waiting_for_domain: w.waitingForDomain, selected: w.selected, pending: w.selected.filter((s) => !s.report_id) });

function noteOf(week: string, selected: Candidate[], eligible: number, unsaved: number, waiting: number): string {
  const top = selected.slice(0, 5).filter((s) => !s.prospect_id.startsWith('(dry run)')).map((s) => `${s.domain} ${s.score}`).join(', ');
  const imported = unsaved ? ` (${unsaved} of them from this import, unscored until enriched)` : '';
  const domainless = waiting ? `; ${waiting} with a profile wait for a domain (a report needs one)` : '';
  return `LinkedIn ${week}: ${selected.length} of ${eligible} eligible prospects${imported}${top ? `; best: ${top}` : ''}${domainless}`;
}
