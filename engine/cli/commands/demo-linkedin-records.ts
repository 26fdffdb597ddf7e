import type { Clock } from '../../clock.ts';
import type { Database } from '../../db/connect.ts';
import { parseDuration } from '../../duration.ts';
import type { RunResult } from '../../executor/run.ts';
import type { Pipeline } from '../../pipeline/types.ts';

/**
 * What the LinkedIn week's runs recorded, as the demo's summary reads it: the events beside
 * each effect, the steps' outputs, and a dry run's planned sends against the run's.
 */

/** A dry run against the run after it: what it said, what happened, and why the rest differs. */
export interface Comparison {
  predicted: number;
  asPredicted: number;
  /** Report links to acceptances the run's own export found (the dry run reads the last one). */
  newerAcceptances: number;
  /** Predicted messages not sent: the run's own inbox scrape found the prospect's reply. */
  newerReplies: number;
  unexplained: string[];
}

/** The sends (effects under a quota) a dry run predicted against those the run performed, with why any differ. */
export async function compare(week: Database, dry: RunResult, real: RunResult): Promise<Comparison> {
  const predicted = new Set(dry.effects.filter((e) => e.quota && !e.skipped).map((e) => e.key));
  const done = new Set((await week.query<{ key: string }>("SELECT e.key FROM flow_effects e WHERE e.run_id = $1 AND e.status = 'done' AND EXISTS (SELECT 1 FROM flow_quota_ledger q WHERE q.effect_key = e.key)", [real.run_id])).map((r) => r.key));
  const extra = [...done].filter((k) => !predicted.has(k));
  const missing = [...predicted].filter((k) => !done.has(k));
  // Which invitation an effect is for: its key names it (linkedin-message:<invitation>:<step>).
  const why = async (keys: string[]) =>
    keys.length
      ? week.query<{ key: string; accepted: boolean; replied: boolean }>(
          `SELECT k.key,
                  EXISTS (SELECT 1 FROM linkedin_invitations i JOIN flow_events e ON e.type = 'linkedin.accepted' AND e.run_id = $1 AND e.payload->>'invitation_id' = i.id::text
                           WHERE position(i.id::text IN k.key) > 0) AS accepted,
                  EXISTS (SELECT 1 FROM linkedin_invitations i JOIN flow_events e ON e.type = 'linkedin.replied' AND e.run_id = $1 AND e.key = i.prospect_id::text
                           WHERE position(i.id::text IN k.key) > 0) AS replied
             FROM unnest($2::text[]) AS k(key)`,
          [real.run_id, keys],
        )
      : [];
  const extras = await why(extra);
  const missed = await why(missing);
  return {
    predicted: predicted.size,
    asPredicted: [...predicted].filter((k) => done.has(k)).length,
    newerAcceptances: extras.filter((e) => e.accepted).length,
    newerReplies: missed.filter((m) => m.replied).length,
    unexplained: [...extras.filter((e) => !e.accepted).map((e) => `${e.key} sent, not predicted`), ...missed.filter((m) => !m.replied).map((m) => `${m.key} predicted, not sent`)],
  };
}

/** What the run did, from the events it recorded beside each effect. */
export async function countsOf(week: Database, runId: string): Promise<{ invited: number; accepted: number; reportLinks: number; followUps: number }> {
  const rows = await week.query<{ type: string; step: string | null; n: number }>(
    "SELECT type, payload->>'sequence_step' AS step, count(*)::int AS n FROM flow_events WHERE run_id = $1 AND type LIKE 'linkedin.%' GROUP BY 1, 2",
    [runId],
  );
  const n = (type: string, step?: (s: string | null) => boolean) => rows.filter((r) => r.type === type && (!step || step(r.step))).reduce((a, r) => a + r.n, 0);
  return {
    invited: n('linkedin.invited'),
    accepted: n('linkedin.accepted'),
    reportLinks: n('linkedin.messaged', (s) => s === 'report-link'),
    followUps: n('linkedin.messaged', (s) => s !== 'report-link'),
  };
}

/** Follow-ups due but withheld at this run, as the pipeline's follow-up step counted them (nobody opens a report in the demo: each is a reply). */
export async function stoppedCount(week: Database, runId: string, stepId: string): Promise<number> {
  const [row] = await week.query<{ n: number | null }>("SELECT (output->'counts'->>'stopped')::int AS n FROM flow_steps WHERE run_id = $1 AND step_id = $2", [runId, stepId]);
  return row?.n ?? 0;
}

/** The prospects the plan skipped every time (with why) and never invited. */
export async function neverInvited(db: Database, planStep: string): Promise<{ company: string; reason: string }[]> {
  return db.query<{ company: string; reason: string }>(
    `SELECT company, reason FROM (
       SELECT DISTINCT ON (p.id) coalesce(p.company_name, p.domain) AS company, s.value->>'reason' AS reason
         FROM flow_steps f, jsonb_array_elements(f.output->'skipped') AS s(value)
         JOIN prospects p ON p.id::text = s.value->>'prospect_id'
        WHERE f.step_id = $1 AND NOT EXISTS (SELECT 1 FROM linkedin_invitations i WHERE i.prospect_id = p.id)
        ORDER BY p.id
     ) AS skipped ORDER BY company`,
    [planStep],
  );
}

/** One scripted person's week, from what the runs recorded: a withheld follow-up is due at its time after the acceptance. */
export async function storyOf(week: { db: Database; pipeline: Pipeline; tz: string; clock: Clock }, { profile, company }: { profile: string; company: string }): Promise<string> {
  const when = (d: Date | string | number) => new Intl.DateTimeFormat('en-GB', { timeZone: week.tz, weekday: 'short', hour: '2-digit', minute: '2-digit' }).format(new Date(d));
  const [i] = await week.db.query<{ sent_at: Date | null; accepted_at: Date | null; replied_at: Date | null; reply: string | null }>(
    `SELECT i.sent_at, i.accepted_at, p.replied_at, (SELECT r.text FROM linkedin_replies r WHERE r.profile_url = i.profile_url ORDER BY r.message_at LIMIT 1) AS reply
       FROM linkedin_invitations i JOIN prospects p ON p.id = i.prospect_id WHERE i.profile_url = $1`,
    [profile],
  );
  if (!i?.sent_at) return `${company}: not invited`;
  const messages = await week.db.query<{ sequence_step: string; state: string; sent_at: Date | null }>(
    'SELECT m.sequence_step, m.state, m.sent_at FROM linkedin_messages m JOIN linkedin_invitations i ON i.id = m.invitation_id WHERE i.profile_url = $1 ORDER BY m.planned_at',
    [profile],
  );
  const parts = [`invited ${when(i.sent_at)}`, ...(i.accepted_at ? [`accepted ${when(i.accepted_at)}`] : [])];
  for (const m of messages) parts.push(m.state === 'sent' ? `${m.sequence_step} sent ${when(m.sent_at!)}` : `${m.sequence_step} ${m.state}`);
  if (i.replied_at) parts.push(`replied ${when(i.replied_at)} ("${i.reply}")`);
  const next = followUpSequence(week.pipeline).find((f) => !messages.some((m) => m.sequence_step === f.name));
  const due = next && i.accepted_at ? new Date(i.accepted_at).getTime() + next.afterMs : undefined;
  if (i.replied_at && next && due !== undefined && due <= week.clock.now().getTime()) parts.push(`${next.name} due ${when(due)}: stopped by the reply`);
  return `${company} (${profile}): ${parts.join(', ')}`;
}

/** The follow-up sequence as the pipeline's YAML gives it to linkedin.follow_ups. */
function followUpSequence(pipeline: Pipeline): { name: string; afterMs: number }[] {
  const sequence = pipeline.steps.find((s) => s.uses === 'linkedin.follow_ups')?.with.sequence;
  return Array.isArray(sequence) ? sequence.map((f: { name: string; after: string }) => ({ name: f.name, afterMs: parseDuration(f.after) ?? Infinity })) : [];
}

