import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Static, Type } from '@sinclair/typebox';
import { Liquid, type Template } from 'liquidjs';
import { phantombusterConnector } from '../../connectors/phantombuster/connector.ts';
import { normaliseProfileUrl } from '../../connectors/phantombuster/profile-url.ts';
import { defineResource, defineStep, errorMessage, NonRetriableError, periodAt, type Queryable, type StepContext } from '../../engine/sdk.ts';
import { chooseVariant } from '../email/compose.ts';
import { firstName, insightOf } from '../prospects/insight.ts';
import { accountHealth, dailyVolume } from './health.ts';
import { accountInput } from './launch.ts';

/**
 * `linkedin.plan_invitations`: the day's LinkedIn connection requests, written to
 * linkedin_invitations (like email.campaign for the outbox). From this week's
 * linkedin_selections, best rank first, the prospects with a profile who never got an
 * invitation (by prospect or by profile, on any account) and never replied, up to `daily`
 * (less when the account's health says so: health.ts, with the reason in the note) less
 * those planned today and never more than the quota has room for. Each gets its note
 * from a Liquid template in templates/linkedin/ (its A/B variant chosen from its id, the same
 * on every run); a note over LinkedIn's 200 characters, or holding anything that reads as a
 * link, skips that prospect with the reason (the day takes the next one), never the batch.
 *
 * One row per prospect ever, holding the idempotency key its launch runs under: a rerun, a
 * resumed run or a second machine invites nobody twice. The output lists every invitation to
 * send, with its note, so a resumed run sends what it planned. A dry run writes nothing and
 * lists the same invitations.
 */

/** The longest note LinkedIn takes (a free account's limit). */
export const NOTE_LIMIT = 200;

/** Text LinkedIn would show as a link, or that reads as one: refused in a note. */
const LINK_LIKE = /https?:\/\/|www\.|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b/i;

const NAME = '^[a-z][a-z0-9_-]*$';

const Variant = Type.Object(
  {
    name: Type.String({ pattern: NAME, description: 'The variant as reports count it: a, b ...' }),
    weight: Type.Optional(Type.Number({ minimum: 0, description: 'Share of prospects that get it, against the other weights (default 1).' })),
    template: Type.String({ pattern: '^[a-z0-9][a-z0-9_-]*$', description: 'The Liquid template in templates/linkedin (without .liquid), e.g. invite-a.' }),
  },
  { additionalProperties: false },
);

const Input = Type.Object(
  {
    campaign: Type.String({ pattern: NAME, description: "The campaign's name: attribution of the invitations." }),
    daily: Type.Integer({ minimum: 0, description: 'Connection requests a day.' }),
    account: accountInput('The Phantombuster account (connectors.phantombuster.accounts) that sends them; default: the only one configured.'),
    quota: Type.Optional(Type.String({ default: 'linkedin-connect', description: "The quota the invitations go under: the day's plan never exceeds its room." })),
    variants: Type.Array(Variant, { minItems: 1, description: "The note's A/B variants; a prospect's variant is chosen from its id." }),
  },
  { additionalProperties: false },
);
type PlanInput = Static<typeof Input>;

export const InvitationSchema = Type.Object({
  invitation_id: Type.String(),
  idempotency_key: Type.String(),
  prospect_id: Type.String(),
  profile_url: Type.String(),
  account: Type.String(),
  campaign: Type.String(),
  variant: Type.String(),
  note: Type.String(),
});
export type Invitation = Static<typeof InvitationSchema>;

const Output = Type.Object({
  week: Type.String(),
  invitations: Type.Array(InvitationSchema),
  skipped: Type.Array(Type.Object({ prospect_id: Type.String(), reason: Type.String() })),
  counts: Type.Object({ planned: Type.Integer(), room: Type.Integer(), candidates: Type.Integer(), daily: Type.Integer({ description: "Today's volume: daily, less when the account's health says so (health.ts)." }) }),
  health: Type.Optional(Type.String({ description: "Why today's volume is less than daily (the account's acceptance rate, a reconnection)." })),
});

/** The key a prospect's one invitation runs under, whatever the campaign or the account. */
export const invitationKey = (prospectId: string) => `linkedin-invite:${prospectId}`;

/** ISO week ("2026-W48") of the day `now` falls on in `tz`. */
export function weekOf(now: Date, tz: string): string {
  const [y, m, d] = new Intl.DateTimeFormat('en-CA', { timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit' }).format(now).split('-').map(Number) as [number, number, number];
  const date = new Date(Date.UTC(y, m - 1, d));
  const thursday = new Date(date.getTime() + (3 - ((date.getUTCDay() + 6) % 7)) * 86_400_000);
  const yearStart = Date.UTC(thursday.getUTCFullYear(), 0, 1);
  const week = Math.floor((thursday.getTime() - yearStart) / (7 * 86_400_000)) + 1;
  return `${thursday.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}

/** The notes' and messages' templates, templates/linkedin/<name>.liquid, each parsed once per process. */
export class NoteTemplates {
  private readonly liquid: Liquid;
  private readonly parsed = new Map<string, Promise<Template[]>>();
  constructor(readonly dir: string) {
    this.liquid = new Liquid({ root: dir, strictVariables: true, strictFilters: true, cache: true });
  }

  /** The template filled in: on one line (a note), or with `lines` its lines kept, each trimmed, blank runs made one (a message). */
  async render(template: string, data: Record<string, unknown>, options: { lines?: boolean } = {}): Promise<string> {
    let parsed = this.parsed.get(template);
    if (!parsed) {
      const file = join(this.dir, `${template}.liquid`);
      parsed = readFile(file, 'utf8').then(
        (text) => this.liquid.parse(text, file),
        (err: NodeJS.ErrnoException) => {
          throw new NonRetriableError(err.code === 'ENOENT' ? `linkedin note template: no file ${file}` : `linkedin note template ${file}: ${errorMessage(err)}`);
        },
      );
      this.parsed.set(template, parsed);
      parsed.catch(() => this.parsed.delete(template));
    }
    try {
      const text: string = this.liquid.renderSync(await parsed, data);
      if (!options.lines) return text.replace(/\s+/g, ' ').trim();
      return text
        .split(/\r?\n/)
        .map((line) => line.replace(/[ \t]+/g, ' ').trim())
        .join('\n')
        .replace(/\n{3,}/g, '\n\n')
        .trim();
    } catch (err) {
      throw new NonRetriableError(`linkedin note template "${template}": ${errorMessage(err)}`, { cause: err });
    }
  }
}

export const noteTemplatesResource = defineResource<NoteTemplates>({
  name: 'linkedin-note-templates',
  create: (env) => new NoteTemplates(join(env.projectDir, 'templates', 'linkedin')),
});

/** Why a note cannot go, or undefined when it can. */
export function noteProblem(note: string): string | undefined {
  if (!note) return 'the note is empty';
  if (note.length > NOTE_LIMIT) return `the note is ${note.length} characters, over LinkedIn's ${NOTE_LIMIT}`;
  const link = LINK_LIKE.exec(note);
  if (link) return `the note holds a link ("${link[0]}"): LinkedIn notes carry none`;
  return undefined;
}

/** The account the invitations go from: the one named, else the only one configured. */
export async function accountFor(ctx: StepContext, named: string | undefined): Promise<string> {
  const client = await ctx.use(phantombusterConnector);
  const accounts = Object.keys(client.accounts);
  if (named) {
    if (!accounts.includes(named)) throw new NonRetriableError(`no Phantombuster account "${named}" (have: ${accounts.join(', ') || 'none'}): set connectors.phantombuster.accounts.${named}`);
    return named;
  }
  if (accounts.length !== 1) throw new NonRetriableError(`with: account names the Phantombuster account to invite from (configured: ${accounts.join(', ') || 'none'})`);
  return accounts[0]!;
}

interface Candidate {
  prospect_id: string;
  linkedin_url: string;
  company_name: string | null;
  contact_name: string | null;
  domain: string | null;
  category: string | null;
  metrics: Record<string, unknown> | string | null;
}

/** This week's selected prospects who may get an invitation, best rank first. */
async function candidates(db: Queryable, week: string): Promise<Candidate[]> {
  return db.query<Candidate>(
    `SELECT s.prospect_id::text AS prospect_id, p.linkedin_url, p.company_name, p.contact_name, p.domain, p.category, p.metrics
       FROM linkedin_selections s JOIN prospects p ON p.id = s.prospect_id
      WHERE s.week = $1 AND p.linkedin_url IS NOT NULL AND p.replied_at IS NULL
        AND NOT EXISTS (SELECT 1 FROM linkedin_invitations i WHERE i.prospect_id = p.id)
      ORDER BY s.rank, s.prospect_id`,
    [week],
  );
}

interface Planned extends Omit<Invitation, 'invitation_id'> {}

/** The day's plan, read only: what the run writes and what the dry run shows are this. */
async function planDay(ctx: StepContext, input: PlanInput) {
  const now = ctx.clock.now();
  const tz = ctx.config.business?.timezone ?? 'UTC';
  const week = weekOf(now, tz);
  const { start: dayStart } = periodAt('day', tz, now);
  const account = await accountFor(ctx, input.account);
  const room = (await ctx.quotaRoom(input.quota ?? 'linkedin-connect')).reduce((n, k) => n + k.remaining, 0);
  const [today] = await ctx.db.query<{ n: number }>('SELECT count(*)::int AS n FROM linkedin_invitations WHERE campaign = $1 AND planned_at >= $2', [input.campaign, dayStart]);
  const health = await accountHealth(ctx.db, ctx.config, account, now);
  const daily = dailyVolume(input.daily, health);
  const left = Math.max(0, Math.min(daily - (today?.n ?? 0), room));
  const templates = await ctx.use(noteTemplatesResource);
  const all = await candidates(ctx.db, week);
  const taken = new Set(
    (await ctx.db.query<{ profile_url: string }>('SELECT profile_url FROM linkedin_invitations WHERE profile_url = ANY($1::text[])', [
      all.map((c) => normaliseProfileUrl(c.linkedin_url) ?? ''),
    ])).map((r) => r.profile_url),
  );
  const rows: Planned[] = [];
  const skipped: { prospect_id: string; reason: string }[] = [];
  for (const c of all) {
    if (rows.length >= left) break;
    const profile = normaliseProfileUrl(c.linkedin_url);
    if (!profile) {
      skipped.push({ prospect_id: c.prospect_id, reason: `not a LinkedIn profile URL: ${c.linkedin_url}` });
      continue;
    }
    if (taken.has(profile)) continue; // invited before under another prospect
    const variant = chooseVariant(`${input.campaign}\u001f${c.prospect_id}`, input.variants);
    const metrics = typeof c.metrics === 'string' ? (JSON.parse(c.metrics) as Record<string, unknown>) : c.metrics;
    const data = {
      prospect: { company_name: c.company_name ?? c.domain ?? '', contact_name: c.contact_name ?? '', first_name: firstName(c.contact_name), category: c.category ?? '' },
      insight: insightOf(c.category, metrics, { nameRival: false }), // a note carries no domain
    };
    const note = await templates.render(variant.template, data);
    const problem = noteProblem(note);
    if (problem) {
      skipped.push({ prospect_id: c.prospect_id, reason: problem });
      continue;
    }
    taken.add(profile);
    rows.push({ idempotency_key: invitationKey(c.prospect_id), prospect_id: c.prospect_id, profile_url: profile, account, campaign: input.campaign, variant: variant.name, note });
  }
  return { week, rows, skipped, counts: { planned: rows.length, room, candidates: all.length, daily }, ...(health.reason ? { health: `account ${account} sends ${daily} of ${input.daily} today: ${health.reason}` } : {}) };
}

/**
 * Writes the day's rows (a prospect or a profile with a row already keeps it) and takes for
 * this run every planned invitation of the campaign that no live run holds: today's, and
 * those an earlier run left unsent. Planned rows come first, then the new ones by rank.
 */
async function writeDay(ctx: StepContext, week: string, campaign: string, rows: Planned[]): Promise<Invitation[]> {
  const now = ctx.clock.now();
  if (rows.length) {
    await ctx.db.query(
      `INSERT INTO linkedin_invitations (prospect_id, profile_url, account, campaign, variant, note, idempotency_key, week, planned_at, run_id)
       SELECT r.prospect_id, r.profile_url, r.account, $1, r.variant, r.note, r.idempotency_key, $2, $3, $4
         FROM unnest($5::uuid[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[]) WITH ORDINALITY AS r(prospect_id, profile_url, account, variant, note, idempotency_key, n)
        ORDER BY r.n
       ON CONFLICT DO NOTHING`,
      [campaign, week, now, ctx.run.id, ...(['prospect_id', 'profile_url', 'account', 'variant', 'note', 'idempotency_key'] as const).map((k) => rows.map((r) => r[k]))],
    );
  }
  const taken = await ctx.db.query<Invitation & { planned_at: Date }>(
    `UPDATE linkedin_invitations i SET run_id = $2
      WHERE i.campaign = $1 AND i.state = 'planned'
        AND (i.run_id = $2 OR i.run_id IS NULL OR NOT EXISTS (SELECT 1 FROM flow_runs r WHERE r.id = i.run_id AND r.status IN ('queued', 'running', 'waiting')))
      RETURNING i.id::text AS invitation_id, i.idempotency_key, i.prospect_id::text AS prospect_id, i.profile_url, i.account, i.campaign, i.variant, i.note, i.planned_at`,
    [campaign, ctx.run.id],
  );
  const order = new Map(rows.map((r, i) => [r.idempotency_key, i]));
  const place = (r: Invitation) => order.get(r.idempotency_key) ?? -1;
  return taken
    .sort((a, b) => place(a) - place(b) || new Date(a.planned_at).getTime() - new Date(b.planned_at).getTime() || a.idempotency_key.localeCompare(b.idempotency_key))
    .map(({ planned_at: _, ...r }) => r);
}

const healthNote = (health: string | undefined) => (health ? `; ${health}` : '');

async function sentSince(db: Queryable, campaign: string, since: Date): Promise<number> {
  const [row] = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM linkedin_invitations WHERE campaign = $1 AND sent_at >= $2', [campaign, since]);
  return row?.n ?? 0;
}

const skipNote = (skipped: { prospect_id: string; reason: string }[]) =>
  skipped.length ? `; skipped ${skipped.length}: ${skipped.slice(0, 3).map((s) => `${s.prospect_id} (${s.reason})`).join(', ')}${skipped.length > 3 ? ' ...' : ''}` : '';

export const linkedinPlanInvitations = defineStep({
  type: 'linkedin.plan_invitations',
  description: "Plans the day's LinkedIn connection requests from this week's selection (best rank first), each with its note, into linkedin_invitations.",
  input: Input,
  output: Output,
  effect: {
    kind: () => 'db.write',
    transactional: true,
    async plan(ctx, input) {
      const { week, rows, skipped, counts, health } = await planDay(ctx, input);
      const invitations = rows.map((r) => ({ ...r, invitation_id: `(planned ${r.idempotency_key})` }));
      return {
        summary: `plan ${counts.planned} LinkedIn invitations of ${input.campaign} for ${week} (room today: ${counts.room}; candidates ${counts.candidates})${healthNote(health)}${skipNote(skipped)}`,
        output: { week, invitations, skipped, counts, ...(health ? { health } : {}) },
        artifacts: [{ name: 'linkedin-notes.txt', content: rows.map((r) => `${r.profile_url} [${r.variant}] ${r.note}`).join('\n') + '\n' }],
      };
    },
  },
  async run(ctx, input) {
    const { week, rows, skipped, counts, health } = await planDay(ctx, input);
    // Left-overs of earlier days come on top of today's: the run takes no more than the day can
    // send (the quota's room, the health's volume), so it never waits for tomorrow; the rest
    // stay planned for the next day's plan.
    const all = await writeDay(ctx, week, input.campaign, rows);
    const sentToday = await sentSince(ctx.db, input.campaign, periodAt('day', ctx.config.business?.timezone ?? 'UTC', ctx.clock.now()).start);
    const invitations = all.slice(0, Math.max(0, Math.min(counts.room, counts.daily - sentToday)));
    if (invitations.length < all.length) ctx.note(`${all.length - invitations.length} planned invitations held for the next day (today's room is used)`);
    ctx.note(`${counts.planned} LinkedIn invitations planned for ${week} (room today ${counts.room}, candidates ${counts.candidates})${healthNote(health)}${skipNote(skipped)}`);
    return { week, invitations, skipped, counts, ...(health ? { health } : {}) };
  },
});
