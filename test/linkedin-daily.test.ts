import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PhantombusterClient } from '../connectors/phantombuster/client.ts';
import { SANDBOX_API_KEY } from '../connectors/phantombuster/sandbox.ts';
import { ManualClock } from '../engine/clock.ts';
import type { Database } from '../engine/db/connect.ts';
import { executeRun, type RunResult } from '../engine/executor/run.ts';
import { RunStore } from '../engine/store/index.ts';
import { NOTE_LIMIT, noteProblem } from '../steps/linkedin/plan_invitations.ts';
import { testDatabases } from './helpers/db.ts';
import { type LinkedinProject, linkedinProject } from './helpers/linkedin-project.ts';

/**
 * linkedin-daily as shipped (pipelines/linkedin-daily.yaml, the shipped config's quota
 * linkedin-connect), against the Phantombuster sandbox on loopback, on one manual clock
 * shared by the runs, the client and the simulated LinkedIn: Monday to Friday, 17 a day and
 * 85 a week, nobody invited twice, notes within LinkedIn's limit and free of links, a dry
 * run that lists what the run then sends, and an expired session that stops the run.
 */

const MONDAY = '2026-11-23T08:45:00Z'; // 08:45 in London, before the 09:00 window
const WEEK = '2026-W48';
const NEXT_WEEK = '2026-W49';
const DAY = 86_400_000;
const COUNT = 100;

type Setup = LinkedinProject;

const setup = (open: () => Promise<Database>): Setup => linkedinProject(open, { start: MONDAY, seed, kinds: ['connect', 'message', 'connections', 'inbox'] });

/** 100 selected prospects; some must get nothing: a reply, a link in the note, a note too long, a profile twice, no profile. */
async function seed(db: Database): Promise<void> {
  for (let i = 0; i < COUNT; i++) {
    const category = i === 6 ? 'competitor-ahead' : i % 2 ? 'striking-distance' : 'growth';
    const url = i === 5 ? 'linkedin.com/in/Person-5' : i === 99 ? 'https://uk.linkedin.com/in/PERSON-3?trk=x' : i === 98 ? null : `https://www.linkedin.com/in/person-${i}/`;
    await db.query(
      `INSERT INTO prospects (domain, company_name, contact_name, linkedin_url, category, metrics) VALUES ($1, $2, $3, $4, $5, $6)`,
      [
        `site-${i}.test`,
        i === 4 ? 'An Extraordinarily Long Company Name Holdings International Limited Partnership' : i === 2 ? 'shop.example Ltd' : `Company ${i}`,
        `Person${i} Surname`,
        url,
        category,
        JSON.stringify({ organic_traffic: 1000, top_competitor: i === 6 ? 'rival.com' : undefined, competitor_gap: 2, page2_keywords: 7 }),
      ],
    );
  }
  await db.query("UPDATE prospects SET replied_at = now(), reply_channel = 'email' WHERE domain = 'site-7.test'");
  await db.query(
    `INSERT INTO linkedin_selections (week, prospect_id, rank, score, selected_at)
     SELECT CASE WHEN n <= 92 THEN $1 ELSE $2 END, id, n, 100 - n, now()
       FROM (SELECT id, row_number() OVER (ORDER BY regexp_replace(domain, '[^0-9]', '', 'g')::int) AS n FROM prospects) p`,
    [WEEK, NEXT_WEEK],
  );
}

describe.each(testDatabases)('linkedin-daily on $name', ({ open }) => {
  const t = setup(open);
  // A quota wait over a day parks the run "waiting", as the daemon does (a paused quota waits for a person).
  const run = (clock: ManualClock, dryRun = false): Promise<RunResult> =>
    executeRun({ pipeline: t.pipeline, config: t.config, store: new RunStore(t.db), clock, resources: t.resources, dryRun, parkAfterMs: DAY, outDir: join(t.state, `dry-${Math.random()}`) });
  const sent = () =>
    t.db.query<{ prospect_id: string; profile_url: string; account: string; variant: string; note: string; sent_at: Date; container_id: string; domain: string }>(
      "SELECT i.prospect_id::text, i.profile_url, i.account, i.variant, i.note, i.sent_at, i.container_id, p.domain FROM linkedin_invitations i JOIN prospects p ON p.id = i.prospect_id WHERE i.sent_at IS NOT NULL ORDER BY i.sent_at",
    );
  const toDay = (iso: string) => t.clock.advance(Date.parse(iso) - t.clock.now().getTime());
  const connects = () => t.sandbox.launches.filter((l) => l.agentId === t.agents.connect.id);

  it('a dry run lists the day\'s invitations and writes nothing; the run then sends exactly those, 17, within the window', async () => {
    const dry = await run(new ManualClock(new Date(MONDAY)), true);
    expect(dry.status, dry.error).toBe('completed');
    const predicted = dry.effects.filter((e) => e.step === 'invite');
    expect(predicted).toHaveLength(17);
    expect(await t.db.query('SELECT id FROM linkedin_invitations')).toEqual([]);
    expect(t.sandbox.launches).toHaveLength(0);

    const real = await run(t.clock);
    expect(real.status, real.error).toBe('completed');
    const rows = await sent();
    expect(rows).toHaveLength(17);
    expect(connects()).toHaveLength(17);
    expect(predicted.map((e) => e.summary).sort()).toEqual(rows.map((r) => `LinkedIn invitation to ${r.profile_url} from sandbox [${r.variant}]: ${r.note}`).sort());
    // Each launch: one profile, its note as the message, the container recorded.
    for (const launch of connects()) {
      const row = rows.find((r) => r.container_id === launch.containerId)!;
      expect(launch.bonusArgument).toEqual({ spreadsheetUrl: row.profile_url, message: row.note, numberOfAddsPerLaunch: 1 });
    }
    expect(Math.min(...rows.map((r) => new Date(r.sent_at).getTime()))).toBeGreaterThanOrEqual(Date.parse('2026-11-23T09:00:00Z'));
    // Skipped with the reason, not the batch: the note with a link, the note too long; the reply and the second profile never planned.
    const skipped = (real.notes.find((n) => n.step === 'plan')?.text ?? '');
    expect(skipped).toMatch(/skipped 2/);
    const domains = rows.map((r) => r.domain);
    for (const gone of ['site-2.test', 'site-4.test', 'site-7.test']) expect(domains).not.toContain(gone);
    expect(domains).toContain('site-5.test'); // its profile URL normalised
    expect(rows.find((r) => r.domain === 'site-5.test')!.profile_url).toBe('https://www.linkedin.com/in/person-5/');
    expect(new Set(rows.map((r) => r.variant))).toEqual(new Set(['a', 'b']));
    // A prospect whose competitor is ahead is invited, its note naming the competitor by no domain.
    const ahead = rows.find((r) => r.domain === 'site-6.test')!;
    expect(ahead.note).toMatch(/closest search competitor gets about 2x/);
    expect(ahead.note).not.toContain('rival');
  }, 120_000);

  it('run again the same day: nothing new is planned or launched', async () => {
    t.clock.advance(3 * 3_600_000);
    const again = await run(t.clock);
    expect(again.status, again.error).toBe('completed');
    expect(connects()).toHaveLength(17);
    expect(await t.db.query('SELECT id FROM linkedin_invitations')).toHaveLength(17);
  }, 60_000);

  it('Tuesday to Friday: 17 a day, 85 in the week, nobody twice, notes within the limit and without links', async () => {
    for (const day of ['2026-11-24', '2026-11-25', '2026-11-26', '2026-11-27']) {
      toDay(`${day}T08:45:00Z`);
      const result = await run(t.clock);
      expect(result.status, result.error).toBe('completed');
      const today = (await sent()).filter((r) => new Date(r.sent_at).toISOString().startsWith(day));
      expect(today, day).toHaveLength(17);
    }
    const rows = await sent();
    expect(rows).toHaveLength(85);
    for (const r of rows) {
      const at = new Date(r.sent_at).getTime();
      expect(rows.filter((o) => new Date(o.sent_at).getTime() > at - 7 * DAY && new Date(o.sent_at).getTime() <= at).length).toBeLessThanOrEqual(85);
      expect(r.note.length).toBeLessThanOrEqual(NOTE_LIMIT);
      expect(noteProblem(r.note)).toBeUndefined();
      expect(r.note).not.toMatch(/https?:|www\.|\.com\b/i);
    }
    expect(new Set(rows.map((r) => r.prospect_id)).size).toBe(85);
    expect(new Set(rows.map((r) => r.profile_url)).size).toBe(85);
    const invited = t.sandbox.invitations('sandbox').map((i) => i.person.profileUrl);
    expect(invited).toHaveLength(85);
    expect(new Set(invited).size).toBe(85);
    expect(t.sandbox.overlaps).toBe(0);
    // The second form of person-3's profile was never invited under its own prospect.
    expect(rows.map((r) => r.domain)).not.toContain('site-99.test');
  }, 300_000);

  it('an expired session stops the run naming the account, and nothing else is launched', async () => {
    toDay('2026-11-30T08:45:00Z');
    t.sandbox.expireSession('sandbox');
    const before = t.sandbox.launches.length;
    const result = await run(t.clock);
    // The first launch (the inbox) stops the run naming the account; the account's quotas are paused for a person.
    expect(result.status).toBe('needs_attention');
    const error = [result.error ?? '', ...result.failures.map((f) => f.error ?? '')].join('\n');
    expect(error).toMatch(/account "sandbox"/);
    expect(error).toMatch(/renew the session cookie/);
    expect(t.sandbox.launches.length - before).toBe(1);
    expect((await sent()).filter((r) => new Date(r.sent_at).getTime() >= Date.parse('2026-11-30T00:00:00Z'))).toHaveLength(0);
    const paused = await t.db.query<{ quota: string }>('SELECT quota FROM flow_quota_pauses ORDER BY quota');
    expect(paused.map((p) => p.quota)).toEqual(['linkedin-connect', 'linkedin-message']);
    // Run again without a person: nothing is launched at all.
    t.clock.advance(3_600_000);
    const again = await run(t.clock);
    expect(again.status).toBe('needs_attention');
    expect(t.sandbox.launches.length - before).toBe(1);
  }, 120_000);
});

describe.each(testDatabases)('linkedin-daily after a crash between a launch and its record, on $name', ({ open }) => {
  const t = setup(open);

  it('finds the lost launch by its reservation time and waits for it: the profile is invited once', async () => {
    t.clock.advance(20 * 60_000); // 09:05, in the window
    const [p] = await t.db.query<{ id: string }>("SELECT id::text FROM prospects WHERE domain = 'site-0.test'");
    const profile = 'https://www.linkedin.com/in/person-0/';
    const now = t.clock.now();
    await t.db.query(
      `INSERT INTO linkedin_invitations (prospect_id, profile_url, account, campaign, variant, note, idempotency_key, week, planned_at)
       VALUES ($1, $2, 'sandbox', 'linkedin-connect', 'a', 'Hi Person0, a note', $3, $4, $5)`,
      [p!.id, profile, `linkedin-invite:${p!.id}`, WEEK, now],
    );
    // The launch was reserved, then the process died before its container id was recorded.
    await t.db.query("INSERT INTO linkedin_launches (key, account, kind, launched_at) VALUES ($1, 'sandbox', 'connect', $2)", [`linkedin-invite:${p!.id}`, now]);
    const settings = t.config.connectors!.phantombuster as { accounts: Record<string, { agents: { connect: { id: string } } }> };
    const client = new PhantombusterClient({ apiKey: SANDBOX_API_KEY, baseUrl: t.sandbox.url, storageUrl: t.sandbox.storageUrl, clock: t.clock });
    const { containerId } = await client.launch(settings.accounts.sandbox!.agents.connect.id, { bonusArgument: { spreadsheetUrl: profile, message: 'Hi Person0, a note', numberOfAddsPerLaunch: 1 } });

    const result = await executeRun({ pipeline: t.pipeline, config: t.config, store: new RunStore(t.db), clock: t.clock, resources: t.resources, parkAfterMs: DAY });
    expect(result.status, result.error).toBe('completed');
    const [row] = await t.db.query<{ state: string; container_id: string }>('SELECT state, container_id FROM linkedin_invitations WHERE prospect_id = $1', [p!.id]);
    expect(row).toEqual({ state: 'sent', container_id: containerId });
    expect(t.sandbox.invitations('sandbox').filter((i) => i.person.profileUrl === profile)).toHaveLength(1);
    expect(t.sandbox.launches.filter((l) => l.agentId === t.agents.connect.id)).toHaveLength(17); // the lost one and 16 new: 17 today
    expect(t.sandbox.overlaps).toBe(0);
  }, 120_000);
});
