import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDatabase } from '../engine/db/connect.ts';
import { createRegistry } from '../steps/index.ts';
import { cli } from './helpers/cli.ts';

describe('flows demo', () => {
  it('runs end to end on a fresh embedded database, twice', async () => {
    const data = join(mkdtempSync(join(tmpdir(), 'flows-demo-')), 'db');
    const root = resolve(import.meta.dirname, '..');
    const weeks: string[] = [];
    const firstRuns: string[] = [];
    for (const round of [1, 2]) {
      // The second time with --json: the story goes to stderr, the runs it made to stdout as JSON.
      const r = await cli(['demo', '--data', data, ...(round === 2 ? ['--json'] : [])], { cwd: root });
      expect(r.code).toBe(0);
      const story = round === 2 ? r.stderr : r.stdout;
      if (round === 1) expect(r.stderr).toBe('');
      else {
        const summary = JSON.parse(r.stdout) as { exit_code: number; runs: { id: string; pipeline: string; status: string; dry_run: boolean }[]; linkedin_week: { runs: { pipeline: string }[] } | null };
        expect(summary.exit_code).toBe(0);
        const pipelines = new Set(summary.runs.map((run) => run.pipeline));
        for (const name of ['demo', 'demo-signup', 'demo-welcome', 'email-daily', 'click-report']) expect(pipelines, name).toContain(name);
        expect(summary.runs.some((run) => run.dry_run)).toBe(true);
        if (summary.linkedin_week) expect(summary.linkedin_week.runs.filter((run) => run.pipeline === 'linkedin-daily').length).toBeGreaterThan(5);
        // Only this demo's runs: the first one's stay in the database, not in the list.
        expect(firstRuns.length).toBeGreaterThan(3);
        for (const id of firstRuns) expect(summary.runs.map((run) => run.id)).not.toContain(id);
        const shown = /npx flows show (\S+)/.exec(story)![1];
        expect(summary.runs.find((run) => run.id === shown)).toMatchObject({ pipeline: 'demo', status: 'completed', dry_run: false });
      }
      if (round === 1) firstRuns.push(...new Set(story.match(/\br-\d{8}T\d{6}-[0-9a-f]+/g)));
      expect(story).toMatch(/1\. Validated examples\/demo\.yaml and pipelines\/flows\.config\.yaml/); // the demo's own folder
      expect(story).toMatch(/3\. The run:/);
      expect(story).toMatch(/notify effects performed this time: 0/);
      expect(story).toMatch(/POST \/hooks\/demo-signup \(signed\):\s+200 started, run r-\S+/);
      expect(story).toMatch(/the same event again \(a replay\):\s+200 duplicate/);
      expect(story).toMatch(/a forged signature:\s+400 bad x-demo-signature signature/);
      expect(story).toMatch(/the event started demo-welcome:\s+run r-\S+: completed/);
      expect(story).toMatch(/demo-welcome runs for it: 1 \(dedupe/);
      expect(story).toMatch(/a missed fire \(\S+, no daemon ran then\) caught up once: demo-nightly run r-\S+: completed/);
      expect(story).not.toContain('shown as skipped'); // the dry run's notify has nothing to go over, and the demo says why
      expect(story).toMatch(/notify\s+event\.emit\s+completed\s+0 ok \/ 0/);
      expect(story).toContain('notify, which goes over the rows categorise returns, has none to go over');
      expect(story).toMatch(/flows_webhook_responses_total\{route="\/hooks\/demo-signup",status="400"\} 1/);
      expect(story, `round ${round}`).toMatch(/flows_queue_depth 0/);
      // The email day, every time: teasers sent, a person's press is email.clicked.
      expect(story, `round ${round}`).toMatch(/10\. The email day[\s\S]*run r-\S+: completed; [1-9]\d* sent from/);
      expect(story, `round ${round}`).toMatch(/the button 303: email\.clicked events: 1/);
      if (existsSync(process.env.CHROMIUM_PATH || '/usr/bin/chromium')) {
        expect(story).toMatch(/8\. A Stripe payment by new-signup-\S+/);
        expect(story).toMatch(/run r-\S+: completed in [\d.]+s: SEMrush and SpyFu data/);
        expect(story).toMatch(/\/reports\/[A-Za-z0-9_-]{32} \(200, HTML\) and \.pdf \(200, \d+ KiB\); an unknown token: 404/);
        expect(story).toMatch(/payments row: \$49\.00, channel email, campaign demo-week, variant B/);
        expect(story).toMatch(/another event for the same session: duplicate/);
        expect(story).toMatch(/a payment naming no prospect and no domain: Stripe got 200; run r-\S+: needs_attention/);
        expect(story).toMatch(/9\. The weekly run \(weekly-enrich, Sundays 22:00 Europe\/London\)/);
        expect(story).toMatch(/read: 25 records from weekly-list, linkedin-search: 20 prospects, 3 duplicates merged, 2 invalid/);
        expect(story).toMatch(round === 1 ? /census: \d+ new \(\d+ from this import, \d+ saved earlier and never enriched\), 0 stale \(to enrich\), 0 fresh/ : /census: 1 new \(0 from this import, 1 saved earlier and never enriched\), 0 stale \(to enrich\), \d+ fresh/); // the new signup of round 2
        // The numbers agree with each other: the new ones are this import's (at most the 18 read with a domain) and
        // earlier ones; every prospect with search data has a category, and the categories add up.
        const census = /census: (\d+) new \((\d+) from this import(?:, (\d+) saved earlier and never enriched)?\), 0 stale \(to enrich\), (\d+) fresh/.exec(story)!;
        const [news, imported, earlier, fresh] = [census[1], census[2], census[3] ?? '0', census[4]].map(Number);
        expect(imported).toBeLessThanOrEqual(18);
        expect(imported! + earlier!).toBe(news);
        const teasers = /teaser categories of the (\d+) prospects with search data: (.+)/.exec(story)!;
        const sum = teasers[2]!.split(', ').reduce((n, part) => n + Number(part.split(' ').at(-1)), 0);
        expect(sum).toBe(Number(teasers[1]));
        expect(Number(teasers[1])).toBe(news! + fresh!);
        // The dry run chooses as many for LinkedIn (and so plans as many reports) as the run does.
        if (round === 1) {
          const chosen = [...story.matchAll(/select: LinkedIn \S+: (\d+) of (\d+) eligible/g)].map((m) => `${m[1]} of ${m[2]}`);
          expect(chosen).toHaveLength(2);
          expect(chosen[0]).toBe(chosen[1]);
        }
        // Say why a run took long and what the money bought only when it applies: round 2 makes no batch.
        const weekly = /run r-\S+: completed in [\d.]+s.*spent.*/.exec(story.slice(story.indexOf('9. The weekly run')))![0];
        if (round === 2) expect(weekly).not.toContain('Claude batch');
        else expect(weekly).toContain('(Claude batch at half price)');
        expect(story).toMatch(/LinkedIn \d{4}-W\d\d: 14 prospects chosen, 14 reports ready/);
        expect(story, `round ${round}`).toMatch(/click-report run r-\S+: completed in/);
        // The LinkedIn week, every time the same: 17 invitations on Monday, each acceptance its report
        // link, a day-3 follow-up sent, one stopped by a reply, and the dry runs as the runs.
        const week = story.slice(story.indexOf('11. The LinkedIn week'), story.indexOf('\nInspect:'));
        expect(week, `round ${round}`).toMatch(/^11\. The LinkedIn week \(linkedin-daily: 10 runs a weekday, 08:45-17:45\): Mon \d\d \w{3} to Fri \d\d \w{3} \(\d{4}-W\d\d\)/);
        expect(week).toMatch(/the week's 85 prospects: 14 chosen by weekly-enrich \(their reports made on Sunday\), 71 of the demo's own/);
        const day = (label: string) => new RegExp(`^ {3}${label}(?: \\d\\d \\w{3})?((?:\\s+\\d+){7})$`, 'm').exec(week)?.[1]!.trim().split(/\s+/).map(Number);
        const [invited, accepted, links, followUps, stopped, predicted, asPredicted] = day('week')!;
        expect(day('Mon')![0]).toBe(17);
        for (const d of ['Tue', 'Wed', 'Thu', 'Fri']) expect(day(d)![0]).toBeLessThanOrEqual(17);
        expect(invited).toBeGreaterThan(4 * 17);
        expect(links).toBeGreaterThanOrEqual(1);
        expect(links).toBe(accepted);
        expect(followUps).toBeGreaterThanOrEqual(1);
        expect(stopped).toBeGreaterThanOrEqual(1);
        expect(asPredicted).toBe(predicted);
        expect(week).toMatch(/the dry runs matched: each run sent what its dry run predicted/);
        expect(week).not.toContain('not as predicted');
        expect(week).toMatch(/invited Mon \d\d:\d\d, accepted Tue \d\d:\d\d, report-link sent Tue \d\d:\d\d, day-3 sent Fri \d\d:\d\d$/m);
        expect(week).toMatch(/report-link sent Tue \d\d:\d\d, replied Wed \d\d:\d\d \("[^"]+"\), day-3 due Fri \d\d:\d\d: stopped by the reply$/m);
        weeks.push(week.replace(/\(\d+\.\ds\)|took \d+\.\ds/g, ''));
      } else {
        expect(story).toMatch(/11\. The LinkedIn week \(linkedin-daily\): skipped, Chromium/);
      }
    }
    // The same week both times: its database is made afresh, and LinkedIn is drawn from one seed.
    if (weeks.length === 2) expect(weeks[1]).toBe(weeks[0]);
    // Every run is stored at the time it ran: none in the future, none that took no time at all.
    const runs = JSON.parse((await cli(['runs', '--db', data, '--json', '--limit', '200'], { cwd: root })).stdout) as { id: string; pipeline: string; started_at: string; finished_at: string | null }[];
    expect(runs.length).toBeGreaterThan(10);
    for (const run of runs) expect(Date.parse(run.started_at), run.id).toBeLessThanOrEqual(Date.now());
    const daemonRuns = runs.filter((run) => ['demo-nightly', 'paid-report', 'demo-signup'].includes(run.pipeline) && run.finished_at);
    expect(daemonRuns.length).toBeGreaterThan(0);
    expect(daemonRuns.some((run) => Date.parse(run.finished_at!) > Date.parse(run.started_at))).toBe(true);
    // Each email day had a campaign of its own: the engine's tables keep the first one's sends and clicks.
    const db = await openDatabase({ dataDir: data, migrations: createRegistry().migrations });
    try {
      const clicked = await db.query<{ campaign: string }>("SELECT DISTINCT payload->>'campaign' AS campaign FROM flow_events WHERE type = 'email.clicked'");
      expect(clicked).toHaveLength(2);
      const sends = await db.query<{ n: number }>("SELECT count(DISTINCT split_part(key, ':', 2))::int AS n FROM flow_effects WHERE key LIKE 'send:search-visibility-%'");
      expect(sends[0]!.n).toBe(2);
    } finally {
      await db.close();
    }
    if (!weeks.length) return;
    // The week's own database holds what its table said: Monday's 17 invitations, one report link per acceptance.
    const week = await openDatabase({ dataDir: join(dirname(data), 'linkedin-week'), migrations: createRegistry().migrations });
    try {
      const [monday] = await week.query<{ day: string; n: number }>("SELECT to_char(sent_at, 'Dy') AS day, count(*)::int AS n FROM linkedin_invitations WHERE state <> 'planned' GROUP BY 1 ORDER BY min(sent_at) LIMIT 1");
      expect(monday).toEqual({ day: 'Mon', n: 17 });
      const [links] = await week.query<{ accepted: number; links: number }>(
        "SELECT count(*)::int AS accepted, count(*) FILTER (WHERE EXISTS (SELECT 1 FROM linkedin_messages m WHERE m.invitation_id = i.id AND m.sequence_step = 'report-link' AND m.state = 'sent'))::int AS links FROM linkedin_invitations i WHERE i.state = 'accepted'",
      );
      expect(links!.links).toBe(links!.accepted);
      expect(links!.accepted).toBeGreaterThan(0);
    } finally {
      await week.close();
    }
  }, 300_000);
});
