import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { type PhantombusterSandbox, SANDBOX_API_KEY, startPhantombusterSandbox } from '../connectors/phantombuster/sandbox.ts';
import { type Database, openDatabase } from '../engine/db/connect.ts';
import { messageKey } from '../steps/linkedin/message.ts';
import { invitationKey, weekOf } from '../steps/linkedin/plan_invitations.ts';
import { businessMigrations } from '../steps/tables.ts';
import { type CliResult, cli, startCli } from './helpers/cli.ts';
import { createPostgresDatabase } from './helpers/db.ts';
import { processTag, survivors } from './helpers/processes.ts';

/**
 * linkedin-daily as shipped, as a real `flows run` process against a Phantombuster sandbox
 * in this process, SIGKILLed at chosen moments of its launches and resumed with --resume each
 * time, as a person (or a restarted daemon) would. The moments, drawn from a seed:
 *
 * - unanswered: the sandbox has made the launch (the container runs, LinkedIn has the
 *   invitation) but holds its answer (launchAnswerMs), so the process dies before it learns
 *   the container id. The resumed run must find it among the agent's containers.
 * - running: the container id is recorded (the process already polls it) and the container
 *   is still running.
 * - between: the container has finished and its result was read; the process is recording
 *   it, or about to take the next item.
 * - reserving: the process has asked whether the agent runs before its next launch, and is
 *   writing the reservation or about to launch: the resumed run must launch it, once.
 *
 * Before those, one kill made on purpose: the run's first message launch does nothing (an
 * empty run, forgotten so the step tries again), and the process dies while the sandbox holds
 * the answer to the retry's launch. The resumed run must take the retry's container for its
 * own, not the empty one made a second before, which no launch holds either.
 *
 * At the end, from the sandbox's own record of what LinkedIn saw: every profile invited
 * exactly once, every message sent exactly once, no launch overlapping another on the
 * account, no more than 17 connect launches, every launch recorded once, and every row sent.
 *
 * Launches take real time: the sandbox's clock is the wall clock (the child has no other),
 * each container runs RUN_MS and each launch's answer is held LAUNCH_ANSWER_MS. The config
 * edit that makes it run at any hour: the quotas keep their caps (17 a day, 85 in 7 days) but
 * lose their weekdays and windows.
 */

const LAUNCH_ANSWER_MS = 150;
const RUN_MS = 400; // from the launch: it runs on for 250 ms after its answer
const POLL = '40ms';
const PROSPECTS = 20; // this week's selection: 17 are invited today
const DAILY = 17;
const DAY = 86_400_000;
const root = join(import.meta.dirname, '..');
const targets = [{ name: 'pglite' as const }, ...(process.env.TEST_DATABASE_URL ? [{ name: 'postgres' as const }] : [])];

/** Kill moments come from this seed (printed); CRASH_SEED=<n> draws others. Fixed by default, so a run is the same every time. */
const CRASH_SEED = Number(process.env.CRASH_SEED ?? 7);

function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 0x1_0000_0000);
}

/**
 * The connections owed a message today, seeded before the run: invitations sent earlier
 * whose acceptance the run's export finds (the report link), and connections whose report
 * link (and day-3) went days ago (the day-3 and day-7 follow-ups).
 */
const OWED = [
  { slug: 'accepted-1', step: 'report-link', acceptedDaysAgo: 1, before: [] },
  { slug: 'accepted-2', step: 'report-link', acceptedDaysAgo: 1, before: [] },
  { slug: 'accepted-3', step: 'report-link', acceptedDaysAgo: 2, before: [] },
  { slug: 'followed-1', step: 'day-3', acceptedDaysAgo: 4, before: ['report-link'] },
  { slug: 'followed-2', step: 'day-3', acceptedDaysAgo: 5, before: ['report-link'] },
  { slug: 'followed-3', step: 'day-7', acceptedDaysAgo: 8, before: ['report-link', 'day-3'] },
  { slug: 'followed-4', step: 'day-7', acceptedDaysAgo: 9, before: ['report-link', 'day-3'] },
] as const;
const profileOf = (slug: string) => `https://www.linkedin.com/in/${slug}/`;
const SENT_BEFORE = 'A message sent before this run.';

/** The launch that does nothing (the first message), and its retry, whose answer the kill loses. */
const EMPTY_LAUNCH = 3;
const LOST_RETRY: Kill = { moment: 'unanswered', launch: EMPTY_LAUNCH + 1, offsetMs: 40 };

/** The launches the run makes: the inbox, the export, the messages (the first twice), the invitations. */
const LAUNCHES = 2 + OWED.length + 1 + DAILY;

type Moment = 'unanswered' | 'running' | 'between' | 'reserving';
interface Kill {
  moment: Moment;
  /** The sandbox's n-th launch (from 1) the kill is timed on. */
  launch: number;
  /** How long after the moment was seen, in ms. */
  offsetMs: number;
}
/** A kill made, with what the sandbox had when the process died. */
interface Killed extends Kill {
  launchesThen: number;
  /** Whether the launch's answer had reached the process (the launch made by then). */
  answeredThen?: boolean;
  runningThen?: boolean;
}

/** The lost retry, then kills at each moment (the lost answer twice) on distinct later launches, in a seeded order. */
function drawKills(rand: () => number): Kill[] {
  // A restart costs seconds (the embedded database recovers, the run is replayed): five kills, not more.
  const moments: Moment[] = ['unanswered', 'unanswered', 'running', 'between', 'reserving'];
  for (let i = moments.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [moments[i], moments[j]] = [moments[j]!, moments[i]!];
  }
  const launches = new Set<number>();
  const after = LOST_RETRY.launch + 1;
  while (launches.size < moments.length) launches.add(after + Math.floor(rand() * (LAUNCHES - after + 1)));
  const window: Record<Moment, number> = { unanswered: LAUNCH_ANSWER_MS / 2, running: (RUN_MS - LAUNCH_ANSWER_MS) / 2, between: 20, reserving: 5 };
  const drawn = [...launches].sort((a, b) => a - b).map((launch, i) => ({ moment: moments[i]!, launch, offsetMs: Math.floor(rand() * window[moments[i]!]) }));
  return [LOST_RETRY, ...drawn];
}

/** A project with the shipped linkedin-daily and config, its Phantombuster pointed at the sandbox. */
function project(sandbox: PhantombusterSandbox, agents: Record<string, { id: string }>): string {
  const dir = mkdtempSync(join(tmpdir(), 'flows-linkedin-crash-'));
  cpSync(join(root, 'pipelines', 'templates'), join(dir, 'pipelines', 'templates'), { recursive: true });
  cpSync(join(root, 'pipelines', 'linkedin-daily.yaml'), join(dir, 'pipelines', 'linkedin-daily.yaml'));
  const config = parse(readFileSync(join(root, 'pipelines', 'flows.config.yaml'), 'utf8'));
  config.connectors.phantombuster = {
    ...config.connectors.phantombuster,
    base_url: sandbox.url,
    storage_url: sandbox.storageUrl,
    poll: POLL,
    timeout: '5m',
    request_timeout: '10s',
    accounts: { sandbox: { agents } },
  };
  config.public_url = 'https://reports.example.test';
  // The wall clock is the run's: open at any hour and any day, the caps as shipped.
  for (const quota of ['linkedin-connect', 'linkedin-message']) config.quotas[quota] = { caps: config.quotas[quota].caps };
  writeFileSync(join(dir, 'pipelines', 'flows.config.yaml'), stringify(config));
  return dir;
}

const env = { PHANTOMBUSTER_API_KEY: SANDBOX_API_KEY };

/** This week's selection, and the connections owed a message, in the database and at LinkedIn. */
async function seed(db: Database, sandbox: PhantombusterSandbox, timezone: string): Promise<void> {
  const now = Date.now();
  for (let i = 0; i < PROSPECTS; i++) {
    await db.query("INSERT INTO prospects (domain, company_name, contact_name, linkedin_url, category, metrics) VALUES ($1, $2, $3, $4, 'growth', $5)", [
      `site-${i}.test`,
      `Company ${i}`,
      `Person${i} Surname`,
      profileOf(`person-${i}`),
      JSON.stringify({ organic_traffic: 1000 + i, competitor_gap: 2, page2_keywords: 7 }),
    ]);
  }
  await db.query(
    `INSERT INTO linkedin_selections (week, prospect_id, rank, score, selected_at)
     SELECT $1, id, row_number() OVER (ORDER BY regexp_replace(domain, '[^0-9]', '', 'g')::int), 1, now() FROM prospects WHERE domain LIKE 'site-%'`,
    [weekOf(new Date(now), timezone)],
  );
  for (const owed of OWED) {
    const acceptedAt = new Date(now - owed.acceptedDaysAgo * DAY);
    const [p] = await db.query<{ id: string }>(
      "INSERT INTO prospects (domain, company_name, contact_name, linkedin_url, category, metrics) VALUES ($1, $2, 'Pat Earlier', $3, 'growth', '{}') RETURNING id::text",
      [`${owed.slug}.test`, `Company ${owed.slug}`, profileOf(owed.slug)],
    );
    const accepted = owed.step !== 'report-link';
    const [inv] = await db.query<{ id: string }>(
      `INSERT INTO linkedin_invitations (prospect_id, profile_url, account, campaign, variant, note, state, idempotency_key, week, planned_at, sent_at, accepted_at)
       VALUES ($1, $2, 'sandbox', 'linkedin-connect', 'a', 'Hi Pat', $3, $4, 'earlier', $5, $5, $6) RETURNING id::text`,
      [p!.id, profileOf(owed.slug), accepted ? 'accepted' : 'sent', invitationKey(p!.id), new Date(acceptedAt.getTime() - 2 * DAY), accepted ? acceptedAt : null],
    );
    const [report] = await db.query<{ id: string }>(
      "INSERT INTO generated_reports (prospect_id, domain, token, html_path, created_at, company_name) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id::text",
      [p!.id, `${owed.slug}.test`, `tok-${owed.slug}`, `reports/${owed.slug}.html`, new Date(now - 2 * DAY), `Company ${owed.slug}`],
    );
    for (const [k, step] of owed.before.entries()) {
      const at = new Date(acceptedAt.getTime() + k * 4 * DAY);
      await db.query(
        `INSERT INTO linkedin_messages (invitation_id, prospect_id, account, campaign, variant, sequence_step, text, report_id, state, idempotency_key, planned_at, sent_at)
         VALUES ($1, $2, 'sandbox', 'linkedin-connect', 'a', $3, $4, $5, 'sent', $6, $7, $7)`,
        [inv!.id, p!.id, step, SENT_BEFORE, report!.id, messageKey(inv!.id, step), at],
      );
    }
    sandbox.addConnections('sandbox', [{ profileUrl: profileOf(owed.slug), firstName: 'Pat', lastName: 'Earlier', connectedAt: acceptedAt }]);
    // Their threads in the inbox, so its scrape has rows (nobody replies in this test).
    for (const [k] of owed.before.entries()) sandbox.world.message('sandbox', profileOf(owed.slug), SENT_BEFORE, acceptedAt.getTime() + k * 4 * DAY);
  }
}

describe.each(targets)('linkedin-daily killed during its launches on $name', ({ name }) => {
  let sandbox: PhantombusterSandbox;
  let agents: Record<'connect' | 'message' | 'connections' | 'inbox', { id: string }>;
  let dir = '';
  let dbArg = '';
  let drop = async () => {};
  const children = new Set<ReturnType<typeof startCli>>();

  beforeAll(async () => {
    sandbox = await startPhantombusterSandbox({ runMs: RUN_MS, launchAnswerMs: LAUNCH_ANSWER_MS, linkedin: { replyRate: 0 } });
    agents = Object.fromEntries((['connect', 'message', 'connections', 'inbox'] as const).map((kind) => [kind, { id: sandbox.addAgent({ kind, account: 'sandbox' }) }])) as typeof agents;
    dir = project(sandbox, agents);
    dbArg = join(dir, 'db');
    if (name === 'postgres') {
      const created = await createPostgresDatabase(process.env.TEST_DATABASE_URL!, 'flows_linkedin_crash');
      dbArg = created.url;
      drop = created.drop;
    }
    const db = await open();
    try {
      await seed(db, sandbox, parse(readFileSync(join(dir, 'pipelines', 'flows.config.yaml'), 'utf8')).business.timezone);
    } finally {
      await db.close();
    }
  }, 60_000);

  afterAll(async () => {
    // Whatever a failed assertion left running: each child leads its own process group.
    for (const c of children) {
      if (c.child.exitCode === null && c.child.signalCode === null) {
        try {
          process.kill(-c.child.pid!, 'SIGKILL');
        } catch {
          // gone already
        }
        await c.done;
      }
    }
    await sandbox?.close();
    await drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const open = () => openDatabase(name === 'postgres' ? { url: dbArg, migrations: businessMigrations } : { dataDir: dbArg, migrations: businessMigrations });
  const args = () => ['--db', dbArg, '--log-level', 'warn'];

  /** The container of the sandbox's n-th launch, once made. */
  const launchNumber = (n: number) => sandbox.launches[n - 1];
  const seen = (route: string, id: string, answered = false) => sandbox.requests.some((r) => r.route === route && r.id === id && (!answered || r.answered));

  /** Whether the kill's moment has come, from the requests since `from` (the process's first). */
  function reached(kill: Kill, from: number): boolean {
    if (kill.moment === 'reserving') {
      if (sandbox.launches.length !== kill.launch - 1) return false;
      const before = launchNumber(kill.launch - 1);
      const read = before ? sandbox.requests.findIndex((r) => r.route === 'containers/fetch-result-object' && r.id === before.containerId && r.answered) : 0;
      return read >= 0 && sandbox.requests.slice(Math.max(from, read)).some((r) => r.route === 'containers/fetch-all' && r.answered);
    }
    const launch = launchNumber(kill.launch);
    if (!launch) return false;
    switch (kill.moment) {
      case 'unanswered':
        return true; // made, and its answer held
      case 'running':
        return seen('containers/fetch', launch.containerId); // polled: so its id was recorded
      case 'between':
        return seen('containers/fetch-result-object', launch.containerId, true);
    }
  }

  /** Waits for the kill's moment, then SIGKILLs the process group; undefined when the process ends first. */
  async function killAt(child: ReturnType<typeof startCli>, kill: Kill): Promise<Killed | undefined> {
    const from = sandbox.requests.length;
    const fired = await new Promise<boolean>((resolve) => {
      // Looked at on every request the sandbox sees and answers (a moment between two requests
      // can be shorter than a timer's tick on a busy machine), and on a timer for the others.
      let stop = () => {};
      const look = () => {
        if (!reached(kill, from)) return;
        stop();
        setTimeout(() => resolve(true), kill.offsetMs);
      };
      const check = setInterval(look, 1);
      const unsubscribe = sandbox.onRequest(look);
      stop = () => {
        clearInterval(check);
        unsubscribe();
      };
      void child.done.then(() => {
        stop();
        resolve(false);
      });
    });
    if (!fired || child.child.exitCode !== null) return undefined;
    process.kill(-child.child.pid!, 'SIGKILL');
    const launch = launchNumber(kill.launch);
    const killed: Killed = { ...kill, launchesThen: sandbox.launches.length };
    if (launch) {
      killed.answeredThen = sandbox.requests.find((r) => r.route === 'agents/launch' && r.containerId === launch.containerId)!.answered;
      killed.runningThen = Date.now() < sandbox.containers.find((c) => c.id === launch.containerId)!.endsAt;
    }
    const result = await child.done;
    expect(result.signal).toBe('SIGKILL');
    return killed;
  }

  it('launches nothing twice: a lost launch is found again, every profile invited once and every message sent once', async () => {
    const kills = drawKills(random(CRASH_SEED * 100 + (name === 'pglite' ? 41 : 42)));
    const { tag, env: marked } = processTag();
    const killed: Killed[] = [];
    let runId: string | undefined;
    let finished: CliResult | undefined;
    // The launch before the first message is made: the next one, that message's, does nothing.
    const emptyNext = setInterval(() => {
      if (sandbox.launches.length < EMPTY_LAUNCH - 1) return;
      clearInterval(emptyNext);
      sandbox.emptyRuns(1);
    }, 1);
    try {
      for (let attempt = 0; attempt <= kills.length && !finished; attempt++) {
        const child = startCli([...args(), 'run', 'linkedin-daily', '--json', ...(runId ? ['--resume', runId] : [])], { cwd: dir, env: { ...env, ...marked }, group: true });
        children.add(child);
        const kill = kills[killed.length];
        const k = kill && (await killAt(child, kill));
        if (k) {
          killed.push(k);
          runId ??= (JSON.parse((await cli([...args(), 'runs', '--json'], { cwd: dir, env })).stdout) as { id: string }[])[0]?.id;
          continue;
        }
        finished = await child.done;
      }
    } finally {
      clearInterval(emptyNext);
    }
    if (process.env.CRASH_DEBUG) console.error(killed, finished?.stderr);
    expect(sandbox.containers[EMPTY_LAUNCH - 1]).toMatchObject({ agentId: agents.message.id, resultObject: null });
    expect(await survivors(tag)).toEqual([]);
    expect(finished, 'the run completed').toBeDefined();
    expect(finished!.code, finished!.stderr).toBe(0);
    const result = JSON.parse(finished!.stdout) as { run_id: string; status: string };
    expect(result).toMatchObject({ run_id: runId, status: 'completed' });
    expect(killed.map((k) => k.moment)).toEqual(kills.map((k) => k.moment));

    // What LinkedIn saw: 17 invitations, one per profile, from no more than 17 connect launches.
    const connects = sandbox.launches.filter((l) => l.agentId === agents.connect.id);
    expect(connects.length).toBeLessThanOrEqual(DAILY);
    const invited = sandbox.invitations('sandbox').map((i) => i.person.profileUrl);
    expect(invited).toHaveLength(DAILY);
    expect(new Set(invited).size).toBe(DAILY);
    // Each owed message exactly once, and nothing else.
    const sent = sandbox.messages('sandbox').filter((m) => m.text !== SENT_BEFORE);
    const messaged = sent.map((m) => m.profileUrl);
    expect(messaged.sort()).toEqual(OWED.map((o) => profileOf(o.slug)).sort());
    expect(sandbox.overlaps).toBe(0);
    expect(sandbox.launches).toHaveLength(LAUNCHES);

    let repeats = 0;
    const db = await open();
    try {
      const invitations = await db.query<{ profile_url: string; state: string; container_id: string | null }>("SELECT profile_url, state, container_id FROM linkedin_invitations WHERE week <> 'earlier'");
      expect(invitations.filter((i) => i.state !== 'sent')).toEqual([]);
      expect(invitations.map((i) => i.profile_url).sort()).toEqual([...invited].sort());
      const messages = await db.query<{ profile_url: string; sequence_step: string; state: string; text: string }>(
        "SELECT i.profile_url, m.sequence_step, m.state, m.text FROM linkedin_messages m JOIN linkedin_invitations i ON i.id = m.invitation_id WHERE m.text <> $1",
        [SENT_BEFORE],
      );
      expect(messages.map((m) => `${m.profile_url} ${m.sequence_step} ${m.state}`).sort()).toEqual(OWED.map((o) => `${profileOf(o.slug)} ${o.step} sent`).sort());
      for (const m of sent) expect(m.text).toBe(messages.find((r) => r.profile_url === m.profileUrl)!.text);
      // Every launch recorded once, the lost ones too, and every lease given back.
      const launches = await db.query<{ key: string; container_id: string | null; outcome: string | null }>('SELECT key, container_id, outcome FROM linkedin_launches');
      expect(launches.map((l) => l.container_id).sort()).toEqual(sandbox.launches.map((l) => l.containerId).sort());
      // The empty launch kept, its key free; under that key the retry's container, found again after the kill.
      const empty = sandbox.containers[EMPTY_LAUNCH - 1]!.id;
      const kept = launches.filter((l) => l.outcome !== 'ok');
      expect(kept).toEqual([{ key: expect.stringMatching(new RegExp(`^linkedin-message:.+:report-link#${empty}$`)), container_id: empty, outcome: 'empty' }]);
      expect(launches.find((l) => `${l.key}#${empty}` === kept[0]!.key)?.container_id).toBe(sandbox.containers[LOST_RETRY.launch - 1]!.id);
      expect(await db.query('SELECT account, holder FROM linkedin_account_leases WHERE holder IS NOT NULL')).toEqual([]);
      expect(await db.query("SELECT key FROM flow_effects WHERE status = 'reserved'")).toEqual([]);
      [{ repeats }] = (await db.query<{ repeats: number }>('SELECT coalesce(sum(repeats), 0)::int AS repeats FROM flow_effects WHERE run_id = $1', [runId])) as [{ repeats: number }];
      // An invitation's recorded container is the one that invited its profile.
      for (const i of invitations) expect(connects.find((l) => l.containerId === i.container_id)?.bonusArgument?.spreadsheetUrl).toBe(i.profile_url);
    } finally {
      await db.close();
    }
    // The unanswered kills did die before the process could learn the container id.
    for (const k of killed.filter((k) => k.moment === 'unanswered')) expect(k.answeredThen, `launch ${k.launch}`).toBe(false);
    const kindOf = (n: number) => Object.entries(agents).find(([, a]) => a.id === launchNumber(n)!.agentId)![0];
    const state = (k: Killed) =>
      k.moment === 'reserving' ? (k.launchesThen < k.launch ? 'not launched yet' : 'launched') : k.moment === 'unanswered' ? 'answer held' : k.runningThen ? 'running' : 'finished';
    const line = killed.map((k) => `${k.moment} #${k.launch} (${kindOf(k.launch)}, +${k.offsetMs}ms, ${state(k)}${k.launchesThen > k.launch ? ', next launch made' : ''})`);
    console.log(`linkedin-daily on ${name} (CRASH_SEED=${CRASH_SEED}): ${killed.length} kills: ${line.join('; ')}; ${repeats} effects in doubt performed again`);
  }, 240_000);
});
