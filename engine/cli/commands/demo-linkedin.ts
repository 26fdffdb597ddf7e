import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { ManualClock } from '../../clock.ts';
import type { EngineConfig } from '../../config.ts';
import { firesBetween } from '../../daemon/scheduler.ts';
import { type Database, openDatabase } from '../../db/connect.ts';
import { executeRun, type RunResult } from '../../executor/run.ts';
import { table } from '../../format.ts';
import type { Pipeline } from '../../pipeline/types.ts';
import { Resources } from '../../resources.ts';
import { RunStore } from '../../store/index.ts';
import type { Project } from '../project.ts';
import { compare, countsOf, neverInvited, stoppedCount, storyOf } from './demo-linkedin-records.ts';
import { copySelection, topUpSelection } from './demo-linkedin-selection.ts';

/**
 * The demo's LinkedIn week: linkedin-daily as shipped, Monday to Friday of the week
 * weekly-enrich chose its prospects for, three of the schedule's hourly fires a day, on a
 * simulated clock against the Phantombuster sandbox (LinkedIn simulated: who accepts and
 * when, who answers, drawn from a seed). Before each run a dry run says what the run will
 * send; the summary compares the two.
 *
 * The week has a database of its own (beside the demo's, made afresh each time, while the
 * demo's earlier parts run): its runs are dated in the week they simulate, and an invitation
 * goes to a person once ever, so a second demo's week could invite nobody in the demo's
 * database. Into it go the week's
 * selection and its Sunday reports, filled up to the configured week with prospects of the
 * demo's own, whose reports are made when they accept.
 *
 * Two of Monday's invitees are scripted, so the week shows every case whatever the seed
 * draws: one accepts the next day and never answers (the day-3 follow-up goes on Friday),
 * the other accepts the next day and answers the report link a day later (its day-3 is
 * stopped by the reply).
 */

/** What a scripted person does instead of what the seed draws. */
export interface ScriptedPerson {
  acceptAfterDays?: number;
  /** Answers the first message this many days after it; false: answers none. */
  replyAfterDays?: number | false;
}

/** LinkedIn for the week: the Phantombuster sandbox, given by the composition root. */
export interface DemoLinkedIn {
  /** connectors.phantombuster settings that reach it: its key, its URLs, its one account and the agents. */
  readonly connector: Record<string, unknown>;
  /** From now on this person (by canonical profile URL) does as told. */
  script(profileUrl: string, person: ScriptedPerson): void;
  close(): Promise<void>;
}

export type StartLinkedIn = (options: { now: () => Date; seed: string }) => Promise<DemoLinkedIn>;

const DAY = 86_400_000;
/** Of the schedule's fires each day, the demo runs every fourth (08:45, 12:45, 16:45 as shipped). */
const FIRE_STEP = 4;
const SCRIPTS: readonly ScriptedPerson[] = [
  { acceptAfterDays: 1, replyAfterDays: false },
  { acceptAfterDays: 1, replyAfterDays: 1 },
];

/** One day of the week as the summary counts it. */
interface DayFigures {
  day: string;
  runs: string[];
  invited: number;
  accepted: number;
  reportLinks: number;
  followUps: number;
  stoppedByReply: number;
  predicted: number;
  asPredicted: number;
}

/** The week under way: its database, its clock, LinkedIn, and what every run needs. */
interface Week {
  db: Database;
  pipeline: Pipeline;
  tz: string;
  clock: ManualClock;
  linkedin: DemoLinkedIn;
  base: Omit<Parameters<typeof executeRun>[0], 'clock'>;
  dryRoot: string;
  /** The step ids the summary reads outputs of. */
  steps: { plan?: string; followUps?: string };
}

/** The week's own embedded database, made afresh (its folder removed first); the caller closes it. */
export function openWeekDatabase(p: Project, dataDir: string): Promise<Database> {
  rmSync(dataDir, { recursive: true, force: true });
  return openDatabase({ dataDir, migrations: p.registry.migrations });
}

export async function demoLinkedIn(
  p: Project,
  db: Database,
  say: (s?: string) => void,
  /** LinkedIn, and the week's own database (openWeekDatabase) in its folder, when the build has them. */
  given: { start: StartLinkedIn; db: Promise<Database>; dataDir: string } | undefined,
  noReports: string | undefined,
): Promise<void> {
  if (noReports || !given) {
    say(`\n11. The LinkedIn week (linkedin-daily): skipped, ${noReports ?? 'this build has no LinkedIn sandbox'}.`);
    return;
  }
  const began = performance.now();
  const pipeline = p.pipeline('linkedin-daily');
  if (pipeline.trigger.kind !== 'schedule') throw new Error(`${pipeline.file}: the demo runs linkedin-daily on its schedule, and it has none`);
  const tz = pipeline.trigger.timezone;
  const weekDb = await given.db;
  const open: { close(): Promise<void> }[] = [];
  try {
    const chosen = await copySelection(db, weekDb, tz);
    const weekly = (p.config as { linkedin?: { weekly?: number } }).linkedin?.weekly ?? chosen.prospects;
    const added = await topUpSelection(weekDb, chosen.week, weekly - chosen.prospects);
    const days = byDay(weekFires(pipeline.trigger, chosen.monday), tz);
    const clock = new ManualClock(new Date(days[0]!.fires[0]!.getTime() - 15 * 60_000));
    const linkedin = await given.start({ now: () => clock.now(), seed: 'demo-week' });
    open.push(linkedin);
    const config: EngineConfig = { ...p.config, connectors: { ...p.config.connectors, phantombuster: { ...p.config.connectors?.phantombuster, ...linkedin.connector } } };
    const log = p.log.child({}, { level: 'error' });
    const resources = new Resources({ config, env: p.env, log, clock, projectDir: p.dir, stateDir: '.flows' });
    open.push(resources);
    const stepOf = (uses: string) => pipeline.steps.find((s) => s.uses === uses)?.id;
    const week: Week = {
      db: weekDb,
      pipeline,
      tz,
      clock,
      linkedin,
      base: { pipeline, config, store: new RunStore(weekDb, p.scrub), env: p.env, log, scrub: p.scrub, resources, projectDir: p.dir, parkAfterMs: DAY },
      dryRoot: join('.flows', 'demo', 'linkedin-dry-run'),
      steps: { plan: stepOf('linkedin.plan_invitations'), followUps: stepOf('linkedin.follow_ups') },
    };
    rmSync(week.dryRoot, { recursive: true, force: true });

    const monday = days[0]!.fires;
    const times = monday.filter((_, i) => i % FIRE_STEP === 0).map((at) => localTime(at, tz));
    say(
      `\n11. The LinkedIn week (linkedin-daily: ${monday.length} runs a weekday, ${localTime(monday[0]!, tz)}-${localTime(monday.at(-1)!, tz)}): ${days[0]!.label} to ${days.at(-1)!.label} (${chosen.week}) on a simulated clock, the runs at ${times.join(', ')} each day, against LinkedIn simulated by the Phantombuster sandbox.`,
    );
    say(`   the week's ${chosen.prospects + added} prospects: ${chosen.prospects} chosen by weekly-enrich (their reports made on Sunday)${added ? `, ${added} of the demo's own to make the week's ${weekly} (their reports made when they accept)` : ''}, in a database of its own`);
    const scripted: Scripted[] = [];
    const figures: DayFigures[] = [];
    const totals: Totals = { stopped: 0, newerAcceptances: 0, newerReplies: 0, unexplained: [], failed: [] };
    for (const day of days) {
      const dayBegan = performance.now();
      figures.push(await runDay(week, day, totals, scripted, say));
      say(`   ${day.label}: ${figures.at(-1)!.runs.length} runs done (${((performance.now() - dayBegan) / 1000).toFixed(1)}s)`);
    }
    await summarise(week, figures, totals, scripted, say);
    say(`   the week took ${((performance.now() - began) / 1000).toFixed(1)}s; its runs: npx flows runs --db ${given.dataDir}; what each dry run would send: ${week.dryRoot}/`);
  } finally {
    for (const r of open.reverse()) await r.close();
  }
}

interface Scripted {
  profile: string;
  company: string;
  script: ScriptedPerson;
}

/** The week so far, beyond the days' figures. */
interface Totals {
  /** Follow-ups withheld for a reply, as the latest run counted them. */
  stopped: number;
  newerAcceptances: number;
  newerReplies: number;
  unexplained: string[];
  failed: RunResult[];
}

/** One day's runs, each after its dry run; Monday's first dry run picks the scripted people. */
async function runDay(week: Week, day: { label: string; fires: Date[] }, totals: Totals, scripted: Scripted[], say: (s?: string) => void): Promise<DayFigures> {
  const today: DayFigures = { day: day.label, runs: [], invited: 0, accepted: 0, reportLinks: 0, followUps: 0, stoppedByReply: 0, predicted: 0, asPredicted: 0 };
  for (const at of day.fires.filter((_, i) => i % FIRE_STEP === 0)) {
    const { clock } = week;
    if (at > clock.now()) clock.advance(at.getTime() - clock.now().getTime());
    // The dry run on a clock of its own: it plans the run's slots without moving the week's time.
    const dry = await executeRun({ ...week.base, clock: new ManualClock(clock.now()), dryRun: true, outDir: join(week.dryRoot, localStamp(at, week.tz)) });
    if (!scripted.length) {
      scripted.push(...(await scriptFirstInvitees(week, dry)));
      say(`   scripted, so the week shows each case: ${scripted.map((s) => `${s.company} ${describeScript(s.script)}`).join('; ')} (everyone else as the sandbox's seed draws)`);
    }
    const real = await executeRun({ ...week.base, clock });
    if (real.status !== 'completed') totals.failed.push(real);
    const compared = await compare(week.db, dry, real);
    const counts = await countsOf(week.db, real.run_id);
    const stopped = week.steps.followUps ? await stoppedCount(week.db, real.run_id, week.steps.followUps) : 0;
    today.runs.push(localTime(at, week.tz));
    today.invited += counts.invited;
    today.accepted += counts.accepted;
    today.reportLinks += counts.reportLinks;
    today.followUps += counts.followUps;
    // A follow-up withheld stays withheld on every later run: the count grows by the new ones.
    today.stoppedByReply += Math.max(0, stopped - totals.stopped);
    totals.stopped = Math.max(totals.stopped, stopped);
    today.predicted += compared.predicted;
    today.asPredicted += compared.asPredicted;
    totals.newerAcceptances += compared.newerAcceptances;
    totals.newerReplies += compared.newerReplies;
    totals.unexplained.push(...compared.unexplained);
  }
  return today;
}

const describeScript = (s: ScriptedPerson) =>
  [
    s.acceptAfterDays !== undefined ? `accepts ${s.acceptAfterDays} day${s.acceptAfterDays === 1 ? '' : 's'} after the invitation` : '',
    s.replyAfterDays === false ? 'never answers' : s.replyAfterDays !== undefined ? `answers the report link ${s.replyAfterDays} day${s.replyAfterDays === 1 ? '' : 's'} later` : '',
  ]
    .filter(Boolean)
    .join(' and ');

async function summarise(week: Week, figures: DayFigures[], totals: Totals, scripted: Scripted[], say: (s?: string) => void): Promise<void> {
  say('\n   Before each run a dry run said what it would send (invitations and messages); "as predicted" is how many of those the run then sent:\n');
  const sum = (k: keyof DayFigures) => figures.reduce((n, f) => n + (f[k] as number), 0);
  const cols: (keyof DayFigures)[] = ['invited', 'accepted', 'reportLinks', 'followUps', 'stoppedByReply', 'predicted', 'asPredicted'];
  say(
    indent(
      table(
        ['day', 'invitations', 'acceptances', 'report links', 'follow-ups', 'stopped by a reply', 'predicted', 'as predicted'],
        [...figures.map((f) => [f.day, ...cols.map((k) => f[k] as number)]), ['week', ...cols.map(sum)]],
      ),
    ),
  );
  const matched = totals.unexplained.length === 0 && sum('predicted') === sum('asPredicted') + totals.newerReplies;
  const newerReplies = totals.newerReplies ? `, but for ${totals.newerReplies} to prospects whose reply its own inbox scrape found` : '';
  const newerAcceptances = totals.newerAcceptances ? `; besides, ${totals.newerAcceptances} report links for acceptances its own connections export found (a dry run launches nothing: it reads the last export)` : '';
  say(`\n   the dry runs ${matched ? 'matched' : 'did not match'}: each run sent what its dry run predicted${newerReplies}${newerAcceptances}`);
  for (const u of totals.unexplained) say(`     not as predicted: ${u}`);
  const [made] = await week.db.query<{ n: number }>("SELECT count(*)::int AS n FROM flow_events WHERE type = 'report.generated'");
  if (sum('reportLinks')) say(`   each acceptance got its report link in the run that saw it: ${sum('reportLinks') - (made?.n ?? 0)} with the report made on Sunday, ${made?.n ?? 0} with one made there and then (they had none)`);
  const skipped = week.steps.plan ? await neverInvited(week.db, week.steps.plan) : [];
  if (skipped.length) say(`   not invited: ${skipped.length} of the week's prospects, whose note would not go (${skipped[0]!.company}: ${skipped[0]!.reason})`);
  for (const s of scripted) say(`   ${await storyOf(week, s)}`);
  for (const r of totals.failed) say(`   run ${r.run_id}: ${r.status}${r.error ? `: ${r.error}` : ''}`);
}

/**
 * The schedule's fires in the week that starts on `monday` (YYYY-MM-DD, in the pipeline's
 * timezone). The window, Monday 00:00 UTC less 12 hours to Saturday 12:00 UTC, holds that
 * week's weekdays in any timezone and no weekday of another week.
 */
function weekFires(trigger: { cron: string; timezone: string }, monday: string): Date[] {
  const from = Date.parse(`${monday}T00:00:00Z`) - DAY / 2;
  return firesBetween(trigger.cron, trigger.timezone, new Date(from), new Date(from + 5.5 * DAY), 1000);
}

function byDay(fires: Date[], tz: string): { label: string; fires: Date[] }[] {
  const days = new Map<string, Date[]>();
  const label = new Intl.DateTimeFormat('en-GB', { timeZone: tz, weekday: 'short', day: '2-digit', month: 'short' });
  for (const at of fires) days.set(label.format(at), [...(days.get(label.format(at)) ?? []), at]);
  return [...days].map(([l, f]) => ({ label: l.replace(',', ''), fires: f }));
}

const localTime = (at: Date, tz: string) => new Intl.DateTimeFormat('en-GB', { timeZone: tz, hour: '2-digit', minute: '2-digit' }).format(at);
const localStamp = (at: Date, tz: string) => new Intl.DateTimeFormat('sv-SE', { timeZone: tz, dateStyle: 'short', timeStyle: 'short' }).format(at).replace(/[^0-9]/g, '');

/** The first invitees of Monday's dry run (its plan step's output, in order) get the scripts. */
async function scriptFirstInvitees(week: Week, dry: RunResult): Promise<Scripted[]> {
  const first = await week.db.query<{ profile: string; company: string }>(
    `SELECT i.value->>'profile_url' AS profile, coalesce(p.company_name, p.domain) AS company
       FROM flow_steps s, jsonb_array_elements(s.output->'invitations') WITH ORDINALITY AS i(value, n)
       JOIN prospects p ON p.id::text = i.value->>'prospect_id'
      WHERE s.run_id = $1 AND s.step_id = $2 ORDER BY i.n LIMIT $3`,
    [dry.run_id, week.steps.plan, SCRIPTS.length],
  );
  return first.map(({ profile, company }, i) => {
    week.linkedin.script(profile, SCRIPTS[i]!);
    return { profile, company, script: SCRIPTS[i]! };
  });
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => (l ? `   ${l}` : l))
    .join('\n');
}
