import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../engine/clock.ts';
import type { Database } from '../engine/db/connect.ts';
import { executeRun, type RunResult } from '../engine/executor/run.ts';
import { RunStore } from '../engine/store/index.ts';
import { testDatabases } from './helpers/db.ts';
import { type LinkedinProject, linkedinProject } from './helpers/linkedin-project.ts';

/**
 * linkedin-daily as shipped, over three simulated weeks against the Phantombuster sandbox on
 * one manual clock: three runs a weekday (08:45, 12:45, 16:45), 100 selected prospects a week
 * (the first week's reports made on Sunday, a few of them stale; the third week's missing, so
 * made on acceptance). Along the way an expired session on the second Wednesday, renewed by a
 * person the next morning, and a few prospects who reply by email. At the end, from the
 * sandbox's own record of what LinkedIn saw: the daily and 7-day caps held, nobody was
 * invited twice, every acceptance got exactly one report-link message, nothing went to anyone
 * after their reply on either channel, the messages-per-day cap held, and nothing at all was
 * launched while the account was paused.
 */

const DAY = 86_400_000;
const WEEKS = ['2026-W48', '2026-W49', '2026-W50'];
const MONDAYS = ['2026-11-23', '2026-11-30', '2026-12-07'];
const RUN_TIMES = ['08:45', '12:45', '16:45'];
const PER_WEEK = 100;
const EXPIRED_AT = '2026-12-02T12:00:00Z'; // week 2, Wednesday, between runs
const RENEWED_AT = '2026-12-03T08:30:00Z'; // Thursday, before the first run

interface Setup extends LinkedinProject {
  results: { at: string; result: RunResult; launches: number }[];
  emailReplied: Map<string, number>;
  invitedTotal: number;
}

async function seed(db: Database): Promise<void> {
  for (let w = 0; w < WEEKS.length; w++) {
    for (let i = 0; i < PER_WEEK; i++) {
      const n = w * PER_WEEK + i;
      await db.query('INSERT INTO prospects (domain, company_name, contact_name, linkedin_url, category, metrics) VALUES ($1, $2, $3, $4, $5, $6)', [
        `w${w}-site-${i}.test`,
        `Company ${n}`,
        `Person${n} Surname`,
        `https://www.linkedin.com/in/person-${n}/`,
        i % 2 ? 'striking-distance' : 'growth',
        JSON.stringify({ organic_traffic: 1000 + n, competitor_gap: 2, page2_keywords: 7 }),
      ]);
    }
    await db.query(
      `INSERT INTO linkedin_selections (week, prospect_id, rank, score, selected_at)
       SELECT $1, id, row_number() OVER (ORDER BY domain), 1, now() FROM prospects WHERE domain LIKE $2`,
      [WEEKS[w], `w${w}-site-%`],
    );
  }
  // Sunday's reports for weeks one and two: ten of the first week's made 40 days before, stale by then.
  await db.query(
    `INSERT INTO generated_reports (prospect_id, domain, token, html_path, pdf_path, created_at, company_name, cost_usd)
     SELECT p.id, p.domain, 'tok-' || p.domain, 'reports/' || p.domain || '.html', 'reports/' || p.domain || '.pdf',
            CASE WHEN p.domain ~ '^w0-site-[0-9][.]test$' THEN timestamptz '2026-10-12T20:00:00Z' WHEN p.domain LIKE 'w0-%' THEN timestamptz '2026-11-22T20:00:00Z' ELSE timestamptz '2026-11-29T20:00:00Z' END,
            p.company_name, 0
       FROM prospects p WHERE p.domain LIKE 'w0-%' OR p.domain LIKE 'w1-%'`,
  );
}

function setup(open: () => Promise<Database>): Setup {
  const t = linkedinProject<Omit<Setup, keyof LinkedinProject>>(open, { start: `${MONDAYS[0]}T08:00:00Z`, seed, world: { seed: 'three-weeks', replyRate: 0.3 }, kinds: ['connect', 'message', 'connections', 'inbox'] });
  t.results = [];
  t.emailReplied = new Map();
  return t;
}

const goTo = (clock: ManualClock, iso: string) => {
  const ms = Date.parse(iso) - clock.now().getTime();
  if (ms > 0) clock.advance(ms);
};

describe.each(testDatabases)('linkedin-daily over three weeks, on $name', ({ open }) => {
  const t = setup(open);
  const run = (dryRun = false) =>
    executeRun({ pipeline: t.pipeline, config: t.config, store: new RunStore(t.db), clock: dryRun ? new ManualClock(t.clock.now()) : t.clock, resources: t.resources, dryRun, parkAfterMs: DAY, outDir: join(t.state, `dry-${Math.random()}`) });

  it('runs three weeks of weekdays, three times a day', async () => {
    let expired = false;
    let renewed = false;
    let dryChecked = false;
    let followUpsChecked = false;
    for (const monday of MONDAYS) {
      for (let d = 0; d < 5; d++) {
        const day = new Date(Date.parse(`${monday}T00:00:00Z`) + d * DAY).toISOString().slice(0, 10);
        for (const time of RUN_TIMES) {
          const at = `${day}T${time}:00Z`;
          if (!expired && Date.parse(at) > Date.parse(EXPIRED_AT)) {
            goTo(t.clock, EXPIRED_AT);
            t.sandbox.expireSession('sandbox');
            expired = true;
          }
          if (expired && !renewed && Date.parse(at) > Date.parse(RENEWED_AT)) {
            // A person renews the cookie and resumes the account's quotas.
            goTo(t.clock, RENEWED_AT);
            t.sandbox.renewSession('sandbox');
            const store = new RunStore(t.db);
            for (const quota of ['linkedin-connect', 'linkedin-message']) expect(await store.quotas.resume(quota, '', { by: 'a person', now: t.clock.now() })).toBe(true);
            renewed = true;
          }
          goTo(t.clock, at);
          // Week two's Tuesday noon: the dry run lists the report links the run then sends, as of
          // the last export (it launches nothing); the run's own export adds who accepted since.
          if (!dryChecked && at === '2026-12-01T12:45:00Z') {
            const dry = await run(true);
            expect(dry.status, dry.error).toBe('completed');
            const predicted = dry.effects.filter((e) => e.step.endsWith('send')).map((e) => e.summary.replace(/ \[.*$/, ''));
            const lastExport = Math.max(...t.sandbox.launches.filter((l) => l.agentId === t.agents.connections.id).map((l) => l.at.getTime()));
            const since = new Set(
              t.sandbox.invitations('sandbox').filter((i) => i.state === 'accepted' && i.decidesAt > lastExport && i.decidesAt <= t.clock.now().getTime()).map((i) => i.person.profileUrl),
            );
            const before = (await t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM linkedin_messages WHERE sequence_step = 'report-link'"))[0]!.n;
            const real = await run();
            expect(real.status, real.error).toBe('completed');
            t.results.push({ at, result: real, launches: 0 });
            const made = await t.db.query<{ profile_url: string }>(
              "SELECT i.profile_url FROM linkedin_messages m JOIN linkedin_invitations i ON i.id = m.invitation_id WHERE m.sequence_step = 'report-link' ORDER BY m.planned_at OFFSET $1",
              [before],
            );
            const expected = made.map((m) => m.profile_url).filter((u) => !since.has(u));
            expect(predicted.sort()).toEqual(expected.map((u) => `LinkedIn message report-link to ${u} from sandbox`).sort());
            dryChecked = true;
            continue;
          }
          // From the Thursday after the reconnection, at noon: the first dry run that lists follow-ups
          // lists the run's, but for those the run's own inbox read finds replying since the last.
          if (!followUpsChecked && time === '12:45' && at >= '2026-12-03') {
            const dry = await run(true);
            const predictedFollowUps = dry.effects.filter((e) => e.step === 'follow_up').map((e) => e.summary.replace(/ \[.*$/, ''));
            if (predictedFollowUps.length) {
              const followUpsBefore = (await t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM linkedin_messages WHERE sequence_step <> 'report-link'"))[0]!.n;
              const repliesBefore = (await t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM linkedin_replies'))[0]!.n;
              const real = await run();
              expect(real.status, real.error).toBe('completed');
              t.results.push({ at, result: real, launches: 0 });
              const made = (
                await t.db.query<{ step: string; profile_url: string }>(
                  "SELECT m.sequence_step AS step, i.profile_url FROM linkedin_messages m JOIN linkedin_invitations i ON i.id = m.invitation_id WHERE m.sequence_step <> 'report-link' ORDER BY m.planned_at OFFSET $1",
                  [followUpsBefore],
                )
              ).map((m) => `LinkedIn message ${m.step} to ${m.profile_url} from sandbox`);
              const newlyReplied = new Set((await t.db.query<{ profile_url: string }>('SELECT profile_url FROM linkedin_replies ORDER BY recorded_at OFFSET $1', [repliesBefore])).map((r) => r.profile_url));
              for (const m of made) expect(predictedFollowUps).toContain(m);
              for (const p of predictedFollowUps.filter((x) => !made.includes(x))) expect(newlyReplied.has(p.replace(/^.* to (\S+) from .*$/, '$1')), p).toBe(true);
              followUpsChecked = true;
              continue;
            }
          }
          const launchesBefore = t.sandbox.launches.length;
          const result = await run();
          t.results.push({ at, result, launches: t.sandbox.launches.length - launchesBefore });
          // Two prospects a day who got their report link reply by email instead.
          const emailers = await t.db.query<{ id: string }>(
            `SELECT p.id::text FROM prospects p JOIN linkedin_messages m ON m.prospect_id = p.id AND m.sequence_step = 'report-link' AND m.state = 'sent'
              WHERE p.replied_at IS NULL ORDER BY p.domain LIMIT 2`,
          );
          if (time === '16:45') {
            for (const e of emailers) {
              await t.db.query("UPDATE prospects SET replied_at = $2, reply_channel = 'email' WHERE id = $1", [e.id, t.clock.now()]);
              t.emailReplied.set(e.id, t.clock.now().getTime());
            }
          }
        }
      }
    }
    expect(followUpsChecked).toBe(true);
    const bad = t.results.filter((r) => r.result.status !== 'completed');
    // Only the runs while the session was expired stop, each for a person.
    expect(bad.map((r) => r.at)).toEqual(['2026-12-02T12:45:00Z', '2026-12-02T16:45:00Z']);
    for (const r of bad) expect(r.result.status).toBe('needs_attention');
  }, 600_000);

  it('invited 17 a weekday, never more than 85 in any 7 days, nobody twice', async () => {
    const connects = t.sandbox.launches.filter((l) => l.agentId === t.agents.connect.id).map((l) => l.at.getTime());
    const byDay = new Map<string, number>();
    for (const at of connects) byDay.set(new Date(at).toISOString().slice(0, 10), (byDay.get(new Date(at).toISOString().slice(0, 10)) ?? 0) + 1);
    for (const [day, n] of byDay) expect(n, day).toBeLessThanOrEqual(17);
    for (const at of connects) expect(connects.filter((o) => o > at - 7 * DAY && o <= at).length).toBeLessThanOrEqual(85);
    // Each weekday sent what its plan allowed: 17, or less when the account's health said so
    // (an acceptance rate below the floor; the ramp after the reconnection on Thursday).
    const allowed = new Map<string, number>();
    for (const r of t.results) {
      const day = r.at.slice(0, 10);
      const note = r.result.notes.find((n) => n.step === 'plan')?.text;
      if (note && !allowed.has(day)) allowed.set(day, Number(/sends (\d+) of 17 today/.exec(note)?.[1] ?? 17));
    }
    expect(allowed.size).toBe(15);
    for (const [day, n] of allowed) expect(byDay.get(day) ?? 0, day).toBe(n);
    expect(allowed.get('2026-12-03')).toBeLessThan(17); // the day after the reconnection
    t.invitedTotal = [...byDay.values()].reduce((a, b) => a + b, 0);
    const invited = t.sandbox.invitations('sandbox').map((i) => i.person.profileUrl);
    expect(new Set(invited).size).toBe(invited.length);
  });

  it('every acceptance got exactly one report-link message, with its report', async () => {
    const accepted = await t.db.query<{ profile_url: string; domain: string; replied: boolean; accepted_at: Date }>(
      "SELECT i.profile_url, p.domain, p.replied_at IS NOT NULL AND p.replied_at < i.accepted_at AS replied, i.accepted_at FROM linkedin_invitations i JOIN prospects p ON p.id = i.prospect_id WHERE i.state = 'accepted'",
    );
    expect(accepted.length).toBeGreaterThan(40);
    // LinkedIn's own view: every acceptance up to the last run was seen.
    const lastRun = t.clock.now().getTime();
    const world = t.sandbox.invitations('sandbox').filter((i) => i.state === 'accepted' && i.decidesAt <= lastRun - 4 * 3_600_000);
    const seen = new Set(accepted.map((a) => a.profile_url));
    for (const w of world) expect(seen.has(w.person.profileUrl), w.person.profileUrl).toBe(true);
    const messages = t.sandbox.messages('sandbox');
    for (const a of accepted) {
      if (a.replied) continue;
      const links = messages.filter((m) => m.profileUrl === a.profile_url && /\/reports\//.test(m.text) && /Thanks for connecting/.test(m.text));
      expect(links, a.profile_url).toHaveLength(1);
    }
    // Stale (40 days old) and missing reports were made again: their links are new tokens.
    const stale = await t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM generated_reports WHERE domain ~ '^w0-site-[0-9][.]test$' AND token NOT LIKE 'tok-%'");
    const staleAccepted = accepted.filter((a) => /^w0-site-[0-9]\.test$/.test(a.domain)).length;
    expect(staleAccepted).toBeGreaterThan(0);
    expect(stale[0]!.n).toBe(staleAccepted);
    const made = await t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM generated_reports WHERE domain LIKE 'w2-%'");
    expect(made[0]!.n).toBe(accepted.filter((a) => a.domain.startsWith('w2-')).length);
  });

  it('sent nothing to anyone after their reply, on LinkedIn or by email, and follow-ups went to the others', async () => {
    const replies = await t.db.query<{ profile_url: string; recorded_at: Date }>('SELECT profile_url, min(recorded_at) AS recorded_at FROM linkedin_replies GROUP BY profile_url');
    expect(replies.length).toBeGreaterThan(3);
    const messages = t.sandbox.messages('sandbox');
    for (const r of replies) {
      const after = messages.filter((m) => m.profileUrl === r.profile_url && m.sentAt > new Date(r.recorded_at).getTime());
      expect(after, r.profile_url).toEqual([]);
    }
    expect(t.emailReplied.size).toBeGreaterThan(3);
    const profiles = new Map((await t.db.query<{ id: string; linkedin_url: string }>('SELECT id::text, linkedin_url FROM prospects')).map((p) => [p.id, p.linkedin_url]));
    for (const [id, at] of t.emailReplied) {
      expect(messages.filter((m) => m.profileUrl === profiles.get(id) && m.sentAt > at), id).toEqual([]);
    }
    const steps = await t.db.query<{ sequence_step: string; n: number }>("SELECT sequence_step, count(*)::int AS n FROM linkedin_messages WHERE state = 'sent' GROUP BY sequence_step ORDER BY sequence_step");
    expect(steps.map((s) => s.sequence_step)).toEqual(['day-3', 'day-7', 'report-link']);
    // Each event beside its effect.
    const events = await t.db.query<{ type: string; n: number }>("SELECT type, count(*)::int AS n FROM flow_events WHERE type LIKE 'linkedin.%' GROUP BY type ORDER BY type");
    const count = (type: string) => events.find((e) => e.type === type)?.n ?? 0;
    expect(count('linkedin.invited')).toBe(t.invitedTotal);
    expect(count('linkedin.accepted')).toBe((await t.db.query("SELECT id FROM linkedin_invitations WHERE state = 'accepted'")).length);
    expect(count('linkedin.messaged')).toBe((await t.db.query("SELECT id FROM linkedin_messages WHERE state = 'sent'")).length);
    expect(count('linkedin.account_paused')).toBe(1);
    expect(count('linkedin.replied')).toBe((await t.db.query('SELECT profile_url FROM linkedin_replies')).length);
  });

  it('never sent more than 40 messages a day, and launched nothing while the account was paused', async () => {
    const sends = t.sandbox.launches.filter((l) => l.agentId === t.agents.message.id).map((l) => new Date(l.at).toISOString().slice(0, 10));
    const perDay = new Map<string, number>();
    for (const d of sends) perDay.set(d, (perDay.get(d) ?? 0) + 1);
    for (const [day, n] of perDay) expect(n, day).toBeLessThanOrEqual(40);
    const during = t.sandbox.launches.filter((l) => l.at.getTime() > Date.parse(EXPIRED_AT) && l.at.getTime() < Date.parse(RENEWED_AT));
    expect(during).toHaveLength(1); // the one launch that found the session expired
    expect(t.results.find((r) => r.at === '2026-12-02T16:45:00Z')!.launches).toBe(0);
    expect(t.sandbox.overlaps).toBe(0);
  });
});
