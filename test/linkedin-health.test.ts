import { join } from 'node:path';
import { Command } from 'commander';
import { describe, expect, it, vi } from 'vitest';
import { quotasCommand } from '../engine/cli/commands/quotas.ts';
import type { Project } from '../engine/cli/project.ts';
import { ManualClock } from '../engine/clock.ts';
import { type EngineConfig } from '../engine/config.ts';
import type { Database } from '../engine/db/connect.ts';
import { executeRun, type RunResult } from '../engine/executor/run.ts';
import { RunStore } from '../engine/store/index.ts';
import { dailyVolume, type HealthFacts, healthOf, healthSettings } from '../steps/linkedin/health.ts';
import { testDatabases } from './helpers/db.ts';
import { type LinkedinProject, linkedinProject } from './helpers/linkedin-project.ts';

/**
 * Account health on linkedin-daily as shipped, against the Phantombuster sandbox on one
 * manual clock: an acceptance rate under the floor halves the day's invitations and says
 * why (in the plan, its dry run and `flows quotas`), a healthy rate or too small a sample
 * does not; a reconnection restarts at 60% and ramps back; invitations pending over 21 days
 * are withdrawn in one launch, once, with their events.
 */

const MONDAY = '2026-11-23T08:45:00Z'; // London: 08:45, before the 09:00 window
const DAY = 86_400_000;

type Setup = LinkedinProject;

const setup = (open: () => Promise<Database>, seed: (db: Database) => Promise<void>): Setup => linkedinProject(open, { start: MONDAY, seed });

/** 100 selected prospects, 70 this week (2026-W48) and 30 the next. */
async function seedSelection(db: Database): Promise<void> {
  for (let i = 0; i < 100; i++) {
    await db.query('INSERT INTO prospects (domain, company_name, contact_name, linkedin_url, category, metrics) VALUES ($1, $2, $3, $4, $5, $6)', [
      `site-${i}.test`,
      `Company ${i}`,
      `Person${i} Surname`,
      `https://www.linkedin.com/in/person-${i}/`,
      'growth',
      JSON.stringify({ organic_traffic: 1000, page2_keywords: 7 }),
    ]);
  }
  await db.query(
    `INSERT INTO linkedin_selections (week, prospect_id, rank, score, selected_at)
     SELECT CASE WHEN n <= 70 THEN '2026-W48' ELSE '2026-W49' END, id, n, 100 - n, now()
       FROM (SELECT id, row_number() OVER (ORDER BY regexp_replace(domain, '[^0-9]', '', 'g')::int) AS n FROM prospects WHERE domain LIKE 'site-%') p`,
  );
}

/** Invitations sent before the test begins, by other prospects: `accepted` of `count` accepted, sent one every 3 hours from `from`. */
async function seedHistory(db: Database, count: number, accepted: number, from: string): Promise<void> {
  for (let j = 0; j < count; j++) {
    const sentAt = new Date(Date.parse(from) + j * 3 * 3_600_000);
    const [p] = await db.query<{ id: string }>("INSERT INTO prospects (domain, linkedin_url) VALUES ($1, $2) RETURNING id::text", [`old-${j}.test`, `https://www.linkedin.com/in/old-${j}/`]);
    await db.query(
      `INSERT INTO linkedin_invitations (prospect_id, profile_url, account, campaign, variant, note, idempotency_key, week, planned_at, state, sent_at, accepted_at)
       VALUES ($1, $2, 'sandbox', 'linkedin-connect', 'a', 'Hi', $3, '2026-W46', $4, $5, $4, $6)`,
      [p!.id, `https://www.linkedin.com/in/old-${j}/`, `linkedin-invite:${p!.id}`, sentAt, j < accepted ? 'accepted' : 'sent', j < accepted ? new Date(sentAt.getTime() + DAY) : null],
    );
  }
}

function runner(t: Setup) {
  // A quota wait over a day parks the run "waiting", as the daemon does (a paused quota waits for a person).
  const run = (clock: ManualClock, dryRun = false, more: { resume?: string; parkAfterMs?: number } = {}): Promise<RunResult> =>
    executeRun({ pipeline: t.pipeline, config: t.config, store: new RunStore(t.db), clock, resources: t.resources, dryRun, parkAfterMs: DAY, outDir: join(t.state, `dry-${Math.random()}`), ...more });
  const dry = async (at: string) => {
    const result = await run(new ManualClock(new Date(at)), true);
    expect(result.status, result.error).toBe('completed');
    return { result, invites: result.effects.filter((e) => e.step === 'invite'), plan: result.effects.find((e) => e.step === 'plan')!.summary };
  };
  const toDay = (iso: string) => {
    const ms = Date.parse(iso) - t.clock.now().getTime();
    expect(ms).toBeGreaterThanOrEqual(0);
    t.clock.advance(ms);
  };
  return { run, dry, toDay };
}

/** `flows quotas` (text, or --json) on the test's database, config and clock. */
async function flowsQuotas(t: Setup, at: Date, json = false): Promise<string> {
  let out = '';
  const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  try {
    const project = { config: t.config, registry: t.registry, openDb: async () => ({ ...t.db, close: async () => {} }), display: (p: string) => p, configFile: 'flows.config.yaml' } as unknown as Project;
    const program = new Command().exitOverride();
    quotasCommand(program, () => project, (fn) => async (...args) => void (await fn(...args)), new ManualClock(at));
    await program.parseAsync(['quotas', ...(json ? ['--json'] : [])], { from: 'user' });
  } finally {
    write.mockRestore();
  }
  return out;
}

const sentOn = (t: Setup, day: string) =>
  t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM linkedin_invitations WHERE state = 'sent' AND sent_at >= $1 AND sent_at < $2", [`${day}T00:00:00Z`, new Date(Date.parse(`${day}T00:00:00Z`) + DAY)]).then((r) => r[0]!.n);

describe('the health rule', () => {
  const settings = healthSettings({} as EngineConfig);
  const at = new Date('2026-11-26T08:45:00Z');
  const facts = (sent: number, accepted: number, reconnectedAt: string | null = null): HealthFacts => ({ account: 'a', sent, accepted, reconnectedAt: reconnectedAt ? new Date(reconnectedAt) : null });

  it('has the documented defaults', () => {
    expect(settings).toEqual({ acceptanceFloor: 0.3, countAfterMs: 5 * DAY, minSample: 20, throttleTo: 0.5, reconnectStart: 0.6, reconnectStep: 0.1, withdrawAfterMs: 21 * DAY });
  });

  it('throttles below the floor only once the sample counts; the stricter of throttle and ramp holds', () => {
    expect(healthOf(facts(20, 5), settings, at, 'UTC')).toMatchObject({ rate: 0.25, share: 0.5 });
    expect(healthOf(facts(20, 6), settings, at, 'UTC')).toMatchObject({ rate: 0.3, share: 1 });
    expect(healthOf(facts(19, 0), settings, at, 'UTC')).toMatchObject({ rate: null, share: 1 });
    const both = healthOf(facts(20, 1, '2026-11-25T10:00:00Z'), settings, at, 'UTC');
    expect(both).toMatchObject({ share: 0.5, rampDay: 1 });
    expect(both.reason).toBe('acceptance 5% (1 of 20 invitations sent 5d-12d ago), below the 30% floor; reconnected 2026-11-25, ramp day 2 of 4 (70%): 50% of the daily volume');
    // 60%, 70%, 80%, 90%, then full: of 17 a day, 10, 11, 13, 15, 17.
    const ramp = [0, 1, 2, 3, 4].map((d) => dailyVolume(17, healthOf(facts(0, 0, '2026-11-26T07:00:00Z'), settings, new Date(at.getTime() + d * DAY), 'UTC')));
    expect(ramp).toEqual([10, 11, 13, 15, 17]);
  });
});

describe.each(testDatabases)('acceptance rate and reconnection on $name', ({ open }) => {
  // 30 invitations sent 13-17 November, 6 accepted: 20%, under the 30% floor.
  const t = setup(open, async (db) => {
    await seedSelection(db);
    await seedHistory(db, 30, 6, '2026-11-13T10:00:00Z');
  });
  const { run, dry, toDay } = runner(t);

  it('below the floor: the dry run and the run plan half the day, with the reason; flows quotas says it', async () => {
    const reason = 'account sandbox sends 8 of 17 today: acceptance 20% (6 of 30 invitations sent 5d-12d ago), below the 30% floor: 50% of the daily volume';
    const predicted = await dry(MONDAY);
    expect(predicted.invites).toHaveLength(8);
    expect(predicted.plan).toContain(reason);

    const real = await run(t.clock);
    expect(real.status, real.error).toBe('completed');
    expect(await sentOn(t, '2026-11-23')).toBe(8);
    expect(t.sandbox.launches.filter((l) => l.agentId === t.agents.connect.id)).toHaveLength(8);
    expect(real.notes.find((n) => n.step === 'plan')?.text).toContain(reason);
    const [plan] = await t.db.query<{ output: unknown }>("SELECT output FROM flow_steps WHERE run_id = $1 AND step_id = 'plan'", [real.run_id]);
    expect(typeof plan!.output === 'string' ? JSON.parse(plan!.output) : plan!.output).toMatchObject({ counts: { planned: 8, daily: 8 }, health: reason });

    const text = await flowsQuotas(t, t.clock.now());
    expect(text).toContain('linkedin-connect: LinkedIn account sandbox: acceptance 20% (6 of 30 invitations sent 5d-12d ago), below the 30% floor: 50% of the daily volume (8 a day instead of 17)');
    const json = JSON.parse(await flowsQuotas(t, t.clock.now(), true)) as { quota: string; remarks?: string[] }[];
    expect(json.find((q) => q.quota === 'linkedin-connect')?.remarks).toEqual([expect.stringContaining('below the 30% floor')]);
  }, 120_000);

  it('at or above the floor the day is full, and so it is while the sample is too small, whatever its rate', async () => {
    await t.db.query("UPDATE linkedin_invitations SET accepted_at = sent_at + interval '2 days', state = 'accepted' WHERE profile_url IN ($1, $2, $3, $4, $5, $6)", [6, 7, 8, 9, 10, 11].map((j) => `https://www.linkedin.com/in/old-${j}/`));
    const healthy = await dry('2026-11-24T08:45:00Z');
    expect(healthy.invites).toHaveLength(17);
    expect(healthy.plan).not.toContain('acceptance');
    expect(await flowsQuotas(t, new Date('2026-11-24T08:45:00Z'))).toContain('LinkedIn account sandbox: acceptance 40% (12 of 30 invitations sent 5d-12d ago), at or above the 30% floor: full daily volume');

    // 15 invitations left, 1 accepted: 7%, but 15 is under the sample of 20.
    await t.db.query("DELETE FROM linkedin_invitations WHERE profile_url ~ '/old-([1-9]|1[0-5])/$'");
    const small = await dry('2026-11-24T08:45:00Z');
    expect(small.invites).toHaveLength(17);
    expect(await flowsQuotas(t, new Date('2026-11-24T08:45:00Z'))).toContain('LinkedIn account sandbox: acceptance not counted yet (15 invitations sent 5d-12d ago, counted from 20): full daily volume');
  }, 120_000);

  it('after a reconnection the day restarts at 60% and gains 10% a day; another pause resumed does not ramp', async () => {
    // Wednesday: the session has expired; the run stops on its first launch (the inbox) and pauses the account.
    toDay('2026-11-25T08:45:00Z');
    t.sandbox.expireSession('sandbox');
    const expired = await run(t.clock);
    expect(expired.status).toBe('needs_attention');
    expect(await new RunStore(t.db).quotas.pauseAt('linkedin-connect', '', t.clock.now())).toMatchObject({ reason: expect.stringMatching(/^LinkedIn account "sandbox": the session cookie is expired/) });

    // Thursday 08:30 a person renews the cookie and resumes the quota (flows quotas resume linkedin-connect).
    // The parked run slept on the paused quota past that; nothing happened meanwhile, so time goes back to then.
    t.clock.advance(Date.parse('2026-11-26T08:30:00Z') - t.clock.now().getTime());
    t.sandbox.renewSession('sandbox');
    expect(await new RunStore(t.db).quotas.resume('linkedin-connect', '', { by: 'flows quotas resume (ana)', now: t.clock.now() })).toBe(true);
    expect(await new RunStore(t.db).quotas.resume('linkedin-message', '', { by: 'flows quotas resume (ana)', now: t.clock.now() })).toBe(true);
    const [resumed] = await t.db.query<{ key: string; payload: Record<string, unknown> | string; occurred_at: Date }>("SELECT key, payload, occurred_at FROM flow_events WHERE type = 'quota.resumed' AND key = 'linkedin-connect'");
    expect(resumed!.key).toBe('linkedin-connect');
    expect(typeof resumed!.payload === 'string' ? JSON.parse(resumed!.payload) : resumed!.payload).toMatchObject({ quota: 'linkedin-connect', key: '', resumed_by: 'flows quotas resume (ana)', reason: expect.stringContaining('renew the session cookie') });

    const reason = 'account sandbox sends 10 of 17 today: reconnected 2026-11-26, ramp day 1 of 4 (60%): 60% of the daily volume';
    const predicted = await dry('2026-11-26T08:45:00Z');
    expect(predicted.invites).toHaveLength(10);
    expect(predicted.plan).toContain(reason);
    expect(await flowsQuotas(t, t.clock.now())).toContain('LinkedIn account sandbox: reconnected 2026-11-26, ramp day 1 of 4 (60%): 60% of the daily volume (10 a day instead of 17)');
    // The run the expiry stopped goes on (a person resumes it): it plans the 10 the ramp allows and sends them.
    toDay('2026-11-26T08:45:00Z');
    const launched = t.sandbox.launches.filter((l) => l.agentId === t.agents.connect.id).length;
    const resumedRun = await run(t.clock, false, { resume: expired.run_id, parkAfterMs: 3_600_000 });
    expect(resumedRun.status, resumedRun.error).toBe('completed');
    expect(resumedRun.notes.find((n) => n.step === 'plan')?.text).toContain(reason);
    expect(await sentOn(t, '2026-11-26')).toBe(10);
    // Thursday's own run later: nothing more today.
    t.clock.advance(3_600_000);
    const real = await run(t.clock, false, { parkAfterMs: 3_600_000 });
    expect(real.status, real.error).toBe('completed');
    expect(real.notes.find((n) => n.step === 'plan')?.text).toContain(reason);
    expect(await sentOn(t, '2026-11-26')).toBe(10);
    expect(t.sandbox.launches.filter((l) => l.agentId === t.agents.connect.id).length - launched).toBe(10);

    expect((await dry('2026-11-27T08:45:00Z')).invites).toHaveLength(11); // Friday, day 2: 70%
    const monday = await dry('2026-11-30T08:45:00Z'); // day 5: full
    expect(monday.invites).toHaveLength(17);
    expect(monday.plan).not.toContain('reconnected');

    // A pause a person makes for another reason, resumed, is no reconnection.
    const store = new RunStore(t.db).quotas;
    await store.pause({ quota: 'linkedin-connect', key: '', reason: 'holiday', by: 'a person', until: null, now: new Date('2026-11-30T07:00:00Z') });
    await store.resume('linkedin-connect', '', { by: 'a person', now: new Date('2026-11-30T08:00:00Z') });
    expect((await dry('2026-11-30T08:45:00Z')).invites).toHaveLength(17);
  }, 300_000);
});

describe.each(testDatabases)('withdrawing old pending invitations on $name', ({ open }) => {
  const t = setup(open, seedSelection);
  const { run, dry, toDay } = runner(t);
  const WITHDRAW_DAY = '2026-12-15T08:45:00Z'; // 22 days after the invitations
  const rows = () =>
    t.db.query<{ profile_url: string; state: string; withdrawn_at: Date | null; reason: string | null }>('SELECT profile_url, state, withdrawn_at, reason FROM linkedin_invitations ORDER BY profile_url');
  const events = () =>
    t.db
      .query<{ key: string; payload: Record<string, unknown> | string }>("SELECT key, payload FROM flow_events WHERE type = 'linkedin.withdrawn' ORDER BY key")
      .then((r) => r.map((e) => ({ key: e.key, payload: typeof e.payload === 'string' ? (JSON.parse(e.payload) as Record<string, unknown>) : e.payload })));
  const withdrawLaunches = () => t.sandbox.launches.filter((l) => l.agentId === t.agents.withdraw.id);
  let accepted: string[] = [];
  let due: string[] = [];

  it('nothing is withdrawn while the invitations are recent', async () => {
    const first = await run(t.clock);
    expect(first.status, first.error).toBe('completed');
    expect(await sentOn(t, '2026-11-23')).toBe(17);
    expect(first.notes.find((n) => n.step === 'withdraw')?.text).toBe('no LinkedIn invitation of account sandbox pending over 21d');
    expect(withdrawLaunches()).toHaveLength(0);
  }, 120_000);

  it('22 days later the dry run lists those still pending and launches nothing', async () => {
    // What the acceptance step would have recorded: those LinkedIn shows accepted.
    const now = Date.parse(WITHDRAW_DAY);
    accepted = t.sandbox.invitations('sandbox').filter((i) => t.sandbox.world.stateOf(i, now) === 'accepted').map((i) => i.person.profileUrl);
    expect(accepted.length).toBeGreaterThan(0);
    await t.db.query("UPDATE linkedin_invitations SET state = 'accepted', accepted_at = sent_at + interval '2 days' WHERE profile_url = ANY($1::text[])", [accepted]);
    due = (await rows()).filter((r) => r.state === 'sent').map((r) => r.profile_url);
    expect(due.length).toBe(17 - accepted.length);

    const predicted = await dry(WITHDRAW_DAY);
    const summary = predicted.result.effects.find((e) => e.step === 'withdraw')!.summary;
    expect(summary).toMatch(new RegExp(`^withdraw ${due.length} LinkedIn invitations of account sandbox pending over 21d: `));
    for (const profile of due) expect(summary).toContain(profile);
    for (const profile of accepted) expect(summary).not.toContain(profile);
    expect(withdrawLaunches()).toHaveLength(0);
  }, 60_000);

  it('the run withdraws them in one launch, each with its event; the declined ones, gone from LinkedIn, are marked too', async () => {
    toDay(WITHDRAW_DAY);
    const result = await run(t.clock);
    expect(result.status, result.error).toBe('completed');
    const launches = withdrawLaunches();
    expect(launches).toHaveLength(1);
    expect(String(launches[0]!.bonusArgument!.spreadsheetUrl).split('\n').sort()).toEqual([...due].sort());

    const after = await rows();
    expect(after.filter((r) => r.state === 'withdrawn').map((r) => r.profile_url).sort()).toEqual([...due].sort());
    expect(after.filter((r) => r.state === 'accepted').map((r) => r.profile_url).sort()).toEqual([...accepted].sort());
    for (const r of after.filter((r) => r.state === 'withdrawn')) expect(new Date(r.withdrawn_at!).getTime()).toBeGreaterThanOrEqual(Date.parse(WITHDRAW_DAY));
    // LinkedIn: the pending ones are withdrawn now; the declined ones had nothing pending.
    const onLinkedIn = new Map(t.sandbox.invitations('sandbox').map((i) => [i.person.profileUrl, i.state]));
    const declined = due.filter((p) => onLinkedIn.get(p) === 'declined');
    expect(declined.length).toBeGreaterThan(0);
    expect(due.filter((p) => onLinkedIn.get(p) === 'withdrawn')).toHaveLength(due.length - declined.length);

    const recorded = await events();
    expect(recorded).toHaveLength(due.length);
    for (const e of recorded) {
      expect(e.payload).toMatchObject({ channel: 'linkedin', account: 'sandbox', campaign: 'linkedin-connect', variant: expect.stringMatching(/^[ab]$/), container_id: launches[0]!.containerId });
      expect(e.payload.pending).toBe(!declined.includes(String(e.payload.profile_url)));
    }
    expect(after.find((r) => r.profile_url === declined[0])?.reason).toBe('LinkedIn had no pending invitation (declined, or answered or withdrawn there)');
    expect(after.find((r) => r.profile_url === due.find((p) => !declined.includes(p)))?.reason).toBe('pending over 21d: withdrawn');
    expect(result.notes.find((n) => n.step === 'withdraw')?.text).toMatch(new RegExp(`^${due.length} LinkedIn invitations of account sandbox pending over 21d withdrawn`));
  }, 120_000);

  it('run again the same day: nothing due, no launch, no new event', async () => {
    t.clock.advance(3_600_000);
    const again = await run(t.clock);
    expect(again.status, again.error).toBe('completed');
    expect(withdrawLaunches()).toHaveLength(1);
    expect(await events()).toHaveLength(due.length);
  }, 60_000);

  it('a crash after the launch, before its rows were marked: the next run finds the launch by its key and launches nothing', async () => {
    // Undo what the settle statement did, as if the process died before it.
    await t.db.query("DELETE FROM flow_events WHERE type = 'linkedin.withdrawn'");
    await t.db.query("UPDATE linkedin_invitations SET state = 'sent', withdrawn_at = NULL, reason = NULL WHERE state = 'withdrawn'");
    t.clock.advance(3_600_000);
    const resumed = await run(t.clock);
    expect(resumed.status, resumed.error).toBe('completed');
    expect(withdrawLaunches()).toHaveLength(1);
    expect((await rows()).filter((r) => r.state === 'withdrawn')).toHaveLength(due.length);
    expect(await events()).toHaveLength(due.length);
    expect(t.sandbox.overlaps).toBe(0);
  }, 60_000);
});
