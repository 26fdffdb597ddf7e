import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../engine/clock.ts';
import { type EngineConfig, loadConfig } from '../engine/config.ts';
import { Daemon } from '../engine/daemon/daemon.ts';
import type { Database } from '../engine/db/connect.ts';
import { silentLogger } from '../engine/log.ts';
import { Resources } from '../engine/resources.ts';
import { landingPageUrl, signedLinks } from '../steps/email/links.ts';
import { readLink, signLink } from '../steps/email/tokens.ts';
import { builtinPages, createRegistry } from '../steps/index.ts';
import { first, testDatabases } from './helpers/db.ts';
import { eventually } from './helpers/eventually.ts';

/**
 * Clicks on the links of a cold email through a real daemon: link scanners fetching every
 * link at delivery are recorded as machines and start nothing; a person's click leads to a
 * landing page whose button is the one thing that asks for the report (confirm mode), or
 * counts at once when the rules call it human (direct mode).
 */

const SECRET = 'link-secret-for-clicks-0123456789abcdef';
const CHROME_WINDOWS = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';
const IPHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1';
const HOME = 'https://intel-mail-one.example/';

describe.each(testDatabases)('clicks through the daemon on $name', ({ name, open }) => {
  let db: Database;
  let daemon: Daemon;
  let resources: Resources;
  let state: string;
  let config: EngineConfig;
  /** The config links are made with: the daemon's own address. */
  let linkConfig: EngineConfig;

  async function startDaemon(mode: 'confirm' | 'direct') {
    const email = (config as Record<string, unknown>).email as object;
    const withMode = { ...config, email: { ...email, clicks: { mode } } } as EngineConfig;
    daemon = new Daemon({ db, config: withMode, pipelines: [], pages: builtinPages, resources, env: { FLOWS_LINK_SECRET: SECRET }, port: 0, loops: false });
    await daemon.start();
    linkConfig = { ...withMode, public_url: daemon.url };
  }

  beforeAll(async () => {
    db = await open();
    state = mkdtempSync(join(tmpdir(), 'flows-clicks-'));
    const env = { FLOWS_LINK_SECRET: SECRET };
    const loaded = loadConfig(readFileSync('pipelines/flows.config.yaml', 'utf8'), 'flows.config.yaml', env, createRegistry());
    expect(loaded.diagnostics).toEqual([]);
    const { public_url: _unset, ...base } = loaded.config!;
    // The test client stands in for the reverse proxy: it names the visitor in X-Forwarded-For.
    config = { ...base, daemon: { ...base.daemon, trust_proxy: ['loopback'] }, connectors: { ...base.connectors, storage: { dir: join(state, 'reports') } } };
    resources = new Resources({ config, env, log: silentLogger, clock: systemClock, projectDir: 'pipelines', stateDir: state });
    await startDaemon('confirm');
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    await resources?.close();
    await db?.close();
    if (state) rmSync(state, { recursive: true, force: true });
  });

  let n = 0;
  /** A prospect and its teaser, accepted by the receiving server `secondsAgo` seconds ago, with its two links. */
  async function sentEmail(secondsAgo: number, company = 'Acme Widgets') {
    n++;
    const prospect = await first(db.query<{ id: string }>('INSERT INTO prospects (domain, company_name) VALUES ($1, $2) RETURNING id', [`prospect-${n}.test`, company]));
    const sentAt = new Date(Date.now() - secondsAgo * 1000);
    const outbox = await first(
      db.query<{ id: string }>(
        `INSERT INTO email_outbox (campaign, prospect_id, sequence_step, step_index, address, mailbox, domain, variant, state, idempotency_key, due_at, sent_at)
         VALUES ('teaser-nov', $1, 'teaser', 0, $2, 'ana.ruiz@intel-mail-one.example', 'intel-mail-one.example', 'b', 'sent', $3, $4, $4) RETURNING id`,
        [prospect.id, `founder@prospect-${n}.test`, `teaser-nov:${prospect.id}:teaser`, sentAt],
      ),
    );
    const landing = landingPageUrl(linkConfig, outbox.id, sentAt);
    const links = await signedLinks(db, linkConfig, outbox.id, [{ purpose: 'report', target: landing }, { purpose: 'honeypot', target: HOME }], sentAt);
    return { prospectId: prospect.id, outboxId: outbox.id, landing, links };
  }

  const visit = (url: string, init: { ip: string; ua?: string; method?: string; body?: string; headers?: Record<string, string> }) =>
    fetch(url, {
      method: init.method ?? 'GET',
      redirect: 'manual',
      headers: { 'x-forwarded-for': init.ip, ...(init.ua ? { 'user-agent': init.ua } : {}), ...(init.body !== undefined ? { 'content-type': 'application/x-www-form-urlencoded' } : {}), ...init.headers },
      ...(init.body !== undefined ? { body: init.body } : {}),
    });

  const observations = (outboxId?: string) =>
    db.query<{ class: string; method: string; ip: string; user_agent: string | null; signals: Record<string, unknown> }>(
      `SELECT class, method, ip, user_agent, signals FROM email_click_observations ${outboxId ? 'WHERE outbox_id = $1' : ''} ORDER BY observed_at`,
      outboxId ? [outboxId] : [],
    );
  const events = (type: string, outboxId?: string) =>
    db.query<{ key: string; payload: Record<string, unknown> }>(
      `SELECT key, payload FROM flow_events WHERE type = $1 ${outboxId ? "AND payload->>'outbox_id' = $2" : ''} ORDER BY occurred_at`,
      outboxId ? [type, outboxId] : [type],
    );

  it('makes one link row per purpose, the same on a repeat, under /c/ with no personal data in it', async () => {
    const email = await sentEmail(7200);
    expect(Object.keys(email.links).sort()).toEqual(['honeypot', 'report']);
    for (const url of Object.values(email.links)) {
      expect(url).toMatch(new RegExp(`^${daemon.url}/c/[A-Za-z0-9_-]{50}$`));
      expect(url.toLowerCase()).not.toContain('prospect');
    }
    const again = await signedLinks(db, linkConfig, email.outboxId, [{ purpose: 'report', target: email.landing }, { purpose: 'honeypot', target: HOME }], new Date());
    expect(again).toEqual(email.links);
    const rows = await db.query<{ id: string; purpose: string; target: string }>('SELECT id, purpose, target FROM email_links WHERE outbox_id = $1 ORDER BY purpose', [email.outboxId]);
    expect(rows.map((r) => [r.purpose, r.target])).toEqual([['honeypot', HOME], ['report', email.landing]]);
    const claim = readLink(SECRET, email.links.report!.split('/c/')[1]!);
    expect(claim).toMatchObject({ kind: 'c', id: rows[1]!.id });
    expect(readLink(SECRET, email.landing.split('/r/')[1]!)).toMatchObject({ kind: 'r', id: email.outboxId });
  });

  it('records a scanner walking the links right after delivery as machines, redirects it, and starts nothing', async () => {
    const email = await sentEmail(3);
    const safeLinks = await visit(email.links.report!, { ip: '40.107.22.83', ua: CHROME_WINDOWS });
    expect(safeLinks.status).toBe(302);
    expect(safeLinks.headers.get('location')).toBe(email.landing);
    expect((await visit(email.links.honeypot!, { ip: '104.47.17.110', ua: CHROME_WINDOWS })).headers.get('location')).toBe(HOME);
    // The same scan from an address on no list: the walk over the links gives it away.
    expect((await visit(email.links.report!, { ip: '198.51.100.20', ua: CHROME_WINDOWS })).status).toBe(302);
    const seen = await observations(email.outboxId);
    expect(seen.map((o) => [o.class, o.ip])).toEqual([
      ['network', '40.107.22.83'],
      ['honeypot', '104.47.17.110'],
      ['burst', '198.51.100.20'],
    ]);
    expect(seen[0]).toMatchObject({ method: 'GET', user_agent: CHROME_WINDOWS, signals: { network: '40.107.0.0/16', too_soon: true } });
    const observed = await events('email.click_observed', email.outboxId);
    expect(observed.map((e) => e.payload.class)).toEqual(['network', 'honeypot', 'burst']);
    expect(observed[0]).toEqual({
      key: email.prospectId,
      payload: { class: 'network', purpose: 'report', prospect_id: email.prospectId, outbox_id: email.outboxId, campaign: 'teaser-nov', variant: 'b', mailbox: 'ana.ruiz@intel-mail-one.example', domain: 'intel-mail-one.example', channel: 'email' },
    });
    expect(await events('email.clicked')).toEqual([]);
  });

  it('records a HEAD as head, answers it 302 with no body, and counts no click', async () => {
    const email = await sentEmail(7200);
    const head = await visit(email.links.report!, { ip: '81.2.69.160', ua: IPHONE, method: 'HEAD' });
    expect(head.status).toBe(302);
    expect(head.headers.get('location')).toBe(email.landing);
    expect(await head.text()).toBe('');
    expect((await observations(email.outboxId)).map((o) => [o.class, o.method])).toEqual([['head', 'HEAD']]);
    expect(await events('email.clicked')).toEqual([]);
  });

  it('answers a token changed in any one character, cut, of another kind or unknown with 404, and records nothing', async () => {
    const email = await sentEmail(7200);
    const token = email.links.report!.split('/c/')[1]!;
    const before = { observations: (await observations()).length, events: (await db.query('SELECT id FROM flow_events')).length };
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const wrong = [token.slice(0, -1), `${token}A`, signLink(SECRET, { kind: 'c', id: randomUUID(), issuedAt: new Date() }), signLink(SECRET, { kind: 'u', id: readLink(SECRET, token)!.id, issuedAt: new Date() })];
    for (let i = 0; i < token.length; i++) wrong.push(`${token.slice(0, i)}${alphabet[(alphabet.indexOf(token[i]!) + 1) % 64]}${token.slice(i + 1)}`);
    for (const t of wrong) {
      const answer = await visit(`${daemon.url}/c/${t}`, { ip: '81.2.69.160', ua: IPHONE });
      expect(answer.status, t).toBe(404);
      expect(answer.headers.get('location')).toBeNull();
    }
    const landingToken = email.landing.split('/r/')[1]!;
    const wrongLanding = [`${landingToken.slice(0, 5)}${landingToken[5] === 'A' ? 'B' : 'A'}${landingToken.slice(6)}`, token, signLink(SECRET, { kind: 'r', id: randomUUID(), issuedAt: new Date() })];
    for (const t of wrongLanding) {
      expect((await visit(`${daemon.url}/r/${t}`, { ip: '81.2.69.160', ua: IPHONE })).status, t).toBe(404);
      expect((await visit(`${daemon.url}/r/${t}`, { ip: '81.2.69.160', ua: IPHONE, method: 'POST', body: 'confirm=yes' })).status, t).toBe(404);
      expect((await visit(`${daemon.url}/r/${t}/status`, { ip: '81.2.69.160', ua: IPHONE })).status, t).toBe(404);
    }
    expect((await observations()).length).toBe(before.observations);
    expect((await db.query('SELECT id FROM flow_events')).length).toBe(before.events);
  });

  let person: Awaited<ReturnType<typeof sentEmail>>;

  it("takes a person's click to the landing page, and only its button's POST is email.clicked, once", async () => {
    person = await sentEmail(7200, 'Acme <Widgets> & "Sons"');
    const click = await visit(person.links.report!, { ip: '81.2.69.160', ua: IPHONE });
    expect(click.status).toBe(302);
    expect(click.headers.get('location')).toBe(person.landing);
    expect((await observations(person.outboxId)).map((o) => o.class)).toEqual(['human']);
    expect(await events('email.clicked')).toEqual([]);

    const token = person.landing.split('/r/')[1]!;
    const landing = await visit(person.landing, { ip: '81.2.69.160', ua: IPHONE });
    expect(landing.status).toBe(200);
    expect(landing.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(landing.headers.get('cache-control')).toBe('no-store');
    const html = await landing.text();
    expect(html).toContain('Acme &lt;Widgets&gt; &amp; &quot;Sons&quot;');
    expect(html).not.toContain('<Widgets>');
    expect(html).toContain(`<form method="post" action="/r/${token}">`);
    expect(html).toMatch(/<button type="submit">Get my report<\/button>/);
    expect(html).not.toMatch(/<script/i);
    expect(await events('email.clicked')).toEqual([]);

    for (let i = 0; i < 2; i++) {
      const post = await visit(person.landing, { ip: '81.2.69.160', ua: IPHONE, method: 'POST', body: 'confirm=yes' });
      expect(post.status).toBe(303);
      expect(post.headers.get('location')).toBe(`/r/${token}/status`);
    }
    expect(await events('email.clicked')).toEqual([
      {
        key: person.prospectId,
        payload: { class: 'human', how: 'confirmed', prospect_id: person.prospectId, outbox_id: person.outboxId, campaign: 'teaser-nov', variant: 'b', mailbox: 'ana.ruiz@intel-mail-one.example', domain: 'intel-mail-one.example', channel: 'email' },
      },
    ]);
    // Asked once, the link leads straight to the report's progress.
    const back = await visit(person.landing, { ip: '81.2.69.160', ua: IPHONE });
    expect(back.status).toBe(303);
    expect(back.headers.get('location')).toBe(`/r/${token}/status`);
  });

  it('makes one email.clicked of presses that arrive at once', async () => {
    const email = await sentEmail(7200);
    const presses = await Promise.all(Array.from({ length: 12 }, () => visit(email.landing, { ip: '81.2.69.160', ua: IPHONE, method: 'POST', body: 'confirm=yes' })));
    expect(presses.map((p) => p.status)).toEqual(Array(12).fill(303));
    expect(await events('email.clicked', email.outboxId)).toHaveLength(1);
  });

  // Presses that all find no email.clicked yet would each write one: only the email_outbox
  // row's lock, taken before the look (confirm() in steps/email/clicks.ts), makes the others
  // wait and then see the first one's. Left to chance the presses hardly ever overlap, so here
  // every INSERT into flow_events waits (reads go on) until all the presses are waiting on a
  // lock: without the row lock they all have looked by then. The embedded database runs one
  // transaction at a time, so two presses cannot overlap there at all.
  it.runIf(name === 'postgres')('makes one email.clicked of presses all waiting at once, each before its insert or before its look', async () => {
    const email = await sentEmail(7200);
    const PRESSES = 8; // under the pool's 10 connections: each press holds one while it waits
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE flow_events IN SHARE MODE');
      const presses = Promise.all(Array.from({ length: PRESSES }, () => visit(email.landing, { ip: '81.2.69.160', ua: IPHONE, method: 'POST', body: 'confirm=yes' })));
      presses.catch(() => {});
      const waiting = async () =>
        Number((await holder.query("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")).rows[0].n);
      await eventually(async () => (await waiting()) >= PRESSES, `${PRESSES} presses to wait on a lock`);
      await holder.query('COMMIT');
      expect((await presses).map((p) => p.status)).toEqual(Array(PRESSES).fill(303));
    } finally {
      await holder.end();
    }
    expect(await events('email.clicked', email.outboxId)).toHaveLength(1);
  });

  it('shows the status page refreshing until a report for the prospect is made, then sends the person to it', async () => {
    const status = `${person.landing}/status`;
    const token = person.landing.split('/r/')[1]!;
    // A report of the prospect older than 30 days and older than the click is not the one asked for.
    await db.query("INSERT INTO generated_reports (prospect_id, domain, token, created_at) VALUES ($1, 'old.test', $2, now() - interval '40 days')", [person.prospectId, 'o'.repeat(32)]);
    for (let i = 0; i < 2; i++) {
      const waiting = await visit(status, { ip: '81.2.69.160', ua: IPHONE });
      expect(waiting.status).toBe(200);
      expect(waiting.headers.get('content-security-policy')).toContain("default-src 'none'");
      const html = await waiting.text();
      expect(html).toContain('<meta http-equiv="refresh" content="5">');
      expect(html).toContain('being prepared');
      expect(html).not.toMatch(/<script/i);
    }
    const reportToken = 'R'.repeat(16) + 'r'.repeat(16);
    await db.query("INSERT INTO generated_reports (prospect_id, domain, token) VALUES ($1, 'prospect.test', $2)", [person.prospectId, reportToken]);
    const ready = await visit(status, { ip: '81.2.69.160', ua: IPHONE });
    expect(ready.status).toBe(303);
    expect(ready.headers.get('location')).toBe(`${daemon.url}/reports/${reportToken}`);

    // Nobody asked for this one's report yet: its status page sends back to the button.
    const other = await sentEmail(7200);
    const otherToken = other.landing.split('/r/')[1]!;
    const unasked = await visit(`${other.landing}/status`, { ip: '81.2.69.160', ua: IPHONE });
    expect(unasked.status).toBe(303);
    expect(unasked.headers.get('location')).toBe(`/r/${otherToken}`);
    expect(token).not.toBe(otherToken);
  });

  it('counts observations by class in /metrics', async () => {
    const text = await (await fetch(`${daemon.url}/metrics`)).text();
    expect(text).toContain('# TYPE flows_email_click_observations_total counter');
    const count = (cls: string) => Number(new RegExp(`^flows_email_click_observations_total\\{class="${cls}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
    expect({ network: count('network'), honeypot: count('honeypot'), burst: count('burst'), head: count('head'), human: count('human'), too_soon: count('too_soon') }).toEqual({
      network: 1,
      honeypot: 1,
      burst: 1,
      head: 1,
      human: 1,
      too_soon: 0,
    });
    const stored = await db.query<{ class: string; n: number }>('SELECT class, count(*)::int AS n FROM email_click_observations GROUP BY class ORDER BY class');
    expect(stored).toEqual([
      { class: 'burst', n: 1 },
      { class: 'head', n: 1 },
      { class: 'honeypot', n: 1 },
      { class: 'human', n: 1 },
      { class: 'network', n: 1 },
    ]);
  });

  it('in direct mode makes a human click email.clicked at once, once per email, and never a machine fetch', async () => {
    await daemon.stop();
    await startDaemon('direct');
    const scanned = await sentEmail(7200);
    expect((await visit(scanned.links.report!, { ip: '81.2.69.160', ua: IPHONE, method: 'HEAD' })).status).toBe(302);
    expect((await visit(scanned.links.honeypot!, { ip: '81.2.69.160', ua: CHROME_WINDOWS })).status).toBe(302);
    expect((await visit(scanned.links.report!, { ip: '40.107.22.83', ua: CHROME_WINDOWS })).status).toBe(302);
    expect((await observations(scanned.outboxId)).map((o) => o.class)).toEqual(['head', 'honeypot', 'network']);
    expect(await events('email.clicked', scanned.outboxId)).toEqual([]);

    const email = await sentEmail(7200);
    for (let i = 0; i < 2; i++) {
      const click = await visit(email.links.report!, { ip: '2a00:23c8:4e1:f701::1a', ua: IPHONE });
      expect(click.status).toBe(302);
      expect(click.headers.get('location')).toBe(email.landing);
    }
    const clicked = await events('email.clicked', email.outboxId);
    expect(clicked).toHaveLength(1);
    expect(clicked[0]!.payload).toMatchObject({ class: 'human', how: 'direct', outbox_id: email.outboxId, prospect_id: email.prospectId, channel: 'email' });
    // The landing page it leads to knows the report is asked for.
    const landing = await visit(email.landing, { ip: '81.2.69.160', ua: IPHONE });
    expect(landing.status).toBe(303);
    expect(landing.headers.get('location')).toMatch(/\/status$/);

    // A person too quick for the rules is not a direct click, and the button still serves them.
    const quick = await sentEmail(5);
    expect((await visit(quick.links.report!, { ip: '81.2.69.160', ua: IPHONE })).status).toBe(302);
    expect((await observations(quick.outboxId)).map((o) => o.class)).toEqual(['too_soon']);
    expect(await events('email.clicked', quick.outboxId)).toEqual([]);
    expect((await visit(quick.landing, { ip: '81.2.69.160', ua: IPHONE, method: 'POST', body: 'confirm=yes' })).status).toBe(303);
    expect((await events('email.clicked', quick.outboxId)).map((e) => e.payload.how)).toEqual(['confirmed']);
  });
});
