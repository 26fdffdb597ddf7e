import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SmtpSandbox, startSmtpSandbox } from '../connectors/smtp/sandbox.ts';
import { ManualClock } from '../engine/clock.ts';
import { type EngineConfig, loadConfig } from '../engine/config.ts';
import type { Database } from '../engine/db/connect.ts';
import { executeRun } from '../engine/executor/run.ts';
import { silentLogger } from '../engine/log.ts';
import { loadPipeline } from '../engine/pipeline/load.ts';
import { Resources } from '../engine/resources.ts';
import { RunStore } from '../engine/store/index.ts';
import { SOFT_BOUNCE_WAITS_MS } from '../steps/email/deliver.ts';
import { createRegistry } from '../steps/index.ts';
import { testDatabases } from './helpers/db.ts';

/**
 * What the receiving server answers decides an email's fate (email-daily on the shipped config,
 * a real SMTP server on loopback, an injected clock):
 *
 * - a 451 a few times: the email waits (DeferredError: its effect key and its mailbox's slot
 *   are given back while it waits, so nothing is held and a restart repeats nothing), then goes;
 * - a 451 for good: after the bounded attempts the email ends `bounced`, with a final soft
 *   `email.bounced` event, and the sequence stops there;
 * - a 550 at RCPT: a hard bounce; the address is suppressed, the sequence stops, and a
 *   marketing email.send to the address in another pipeline is skipped too.
 */

const SECRET = 'link-secret-for-email-bounce-0123456789';
const MONDAY = '2026-11-23T07:30:00Z';
// Friday, not Thursday: the manual clock may send Monday's teasers as late as the last soft
// bounce's wake-up (Tuesday 00:30 at the latest), so every follow-up-1 (3 days on) is due by then.
const FRIDAY = '2026-11-27T07:30:00Z';
const OK = 'fine@site-ok.test';
const FLAKY = 'flaky@site-flaky.test';
const DOWN = 'down@site-down.test';
const GONE = 'gone@site-gone.test';

/** A ManualClock that lets the test look at the database each time the run goes to sleep. */
class WatchedClock extends ManualClock {
  watch?: (until: Date) => Promise<void>;
  override async sleepUntil(time: Date, signal?: AbortSignal): Promise<void> {
    await this.watch?.(time);
    return super.sleepUntil(time, signal);
  }
}

const marketing = `name: newsletter
trigger: { manual: {} }
inputs:
  to: { type: array, items: { type: string } }
steps:
  - id: send
    uses: email.send
    foreach: "\${{ inputs.to }}"
    with:
      to: "\${{ item }}"
      sender: d1
      subject: Our news
      template: report-delivery
      data: { name: Sam, company: Acme, domain: acme-widgets.test, url: https://example.test/r, pdf_url: https://example.test/r.pdf, headline: Your visibility }
`;

describe.each(testDatabases)('bounces on $name', ({ open }) => {
  let db: Database;
  let smtp: SmtpSandbox;
  let state: string;
  let config: EngineConfig;
  let resources: Resources;
  const registry = createRegistry();

  beforeAll(async () => {
    db = await open();
    state = mkdtempSync(join(tmpdir(), 'flows-email-bounce-'));
    smtp = await startSmtpSandbox({ rejectRecipients: [GONE], faults: { error: { keys: [FLAKY, DOWN] } } });
    const env = { FLOWS_LINK_SECRET: SECRET };
    config = loadConfig(readFileSync('pipelines/flows.config.yaml', 'utf8'), 'flows.config.yaml', env, registry).config!;
    config.connectors = { ...config.connectors, smtp: { host: smtp.host, port: smtp.port } };
    config.public_url = 'https://reports.example.test';
    resources = new Resources({ config, env, log: silentLogger, clock: new ManualClock(), projectDir: 'pipelines', stateDir: state });
    for (const [i, email] of [OK, FLAKY, DOWN, GONE].entries()) {
      await db.query(
        `INSERT INTO prospects (domain, company_name, contact_name, email, category, category_reason, metrics) VALUES ($1, $2, 'Pat', $3, 'growth', 'a reason', $4)`,
        [email.split('@')[1], `Company ${i}`, email, JSON.stringify({ organic_traffic: 1000 * (10 - i), paid_share: 0.1, competitor_gap: 1 })],
      );
    }
  }, 60_000);

  afterAll(async () => {
    await resources?.close();
    await smtp?.close();
    await db?.close();
    if (state) rmSync(state, { recursive: true, force: true });
  });

  const run = (yaml: string, clock: ManualClock, inputs?: Record<string, unknown>) => {
    const { pipeline, diagnostics } = loadPipeline(yaml, 'pipeline.yaml', { registry, config });
    if (!pipeline) throw new Error(JSON.stringify(diagnostics));
    return executeRun({ pipeline, config, store: new RunStore(db), clock, resources, log: silentLogger, inputs });
  };
  // One in flight: the manual clock jumps to each sleeper's wake-up at once, so with several in
  // flight which email goes when (and what a look at the ledgers finds of the others) would
  // depend on how their statements interleave. One at a time, every wait is looked at alone.
  const daily = readFileSync('pipelines/email-daily.yaml', 'utf8').replace('concurrency: 18', 'concurrency: 1');
  const outbox = (address: string) => db.query<{ state: string; reason: string | null; soft_bounces: number; sequence_step: string; idempotency_key: string }>(
    'SELECT state, reason, soft_bounces, sequence_step, idempotency_key FROM email_outbox WHERE address = $1 ORDER BY step_index',
    [address],
  );

  it('retries a 451 later with nothing held meanwhile, gives up on a lasting one, and suppresses a 550', async () => {
    const clock = new WatchedClock(new Date(MONDAY));
    /** While an email waits after a soft bounce: what the ledgers hold for it. */
    const held: { address: string; bounces: number; until: string; slots: number; reserved: number }[] = [];
    clock.watch = async (until) => {
      for (const address of [FLAKY, DOWN]) {
        const [row] = await outbox(address);
        if (!row || row.state !== 'planned' || row.soft_bounces === 0 || row.soft_bounces > SOFT_BOUNCE_WAITS_MS.length) continue;
        // Only this email's own wait after its latest soft bounce (other sleeps find it in flight).
        const [last] = await db.query<{ at: Date }>("SELECT max(occurred_at) AS at FROM flow_events WHERE type = 'email.bounced' AND key = (SELECT id::text FROM prospects WHERE email = $1)", [address]);
        if (new Date(last!.at).getTime() + SOFT_BOUNCE_WAITS_MS[row.soft_bounces - 1]! !== until.getTime()) continue;
        const [{ slots }] = (await db.query<{ slots: number }>('SELECT count(*)::int AS slots FROM flow_quota_ledger WHERE effect_key LIKE $1', [`%${row.idempotency_key}`])) as [{ slots: number }];
        const [{ reserved }] = (await db.query<{ reserved: number }>("SELECT count(*)::int AS reserved FROM flow_effects WHERE key LIKE $1 AND status = 'reserved'", [`%${row.idempotency_key}`])) as [{ reserved: number }];
        held.push({ address, bounces: row.soft_bounces, until: until.toISOString(), slots, reserved });
      }
      // The flaky server takes the message at the third try.
      const [flaky] = await outbox(FLAKY);
      if (flaky && flaky.soft_bounces >= 2) smtp.faults.set({ error: { keys: [DOWN] } });
    };
    const monday = await run(daily, clock);
    expect(monday.status).toBe('completed');

    const to = (address: string) => smtp.messages.filter((m) => m.envelope.to.includes(address));
    expect(to(OK)).toHaveLength(1);
    // The flaky address: two 451s, then sent, once.
    expect(await outbox(FLAKY)).toMatchObject([{ state: 'sent', soft_bounces: 2, sequence_step: 'teaser' }]);
    expect(to(FLAKY)).toHaveLength(1);
    // Nothing held while either one waited: no quota slot and no reserved effect key.
    expect(held.filter((h) => h.address === FLAKY).length).toBeGreaterThan(0);
    expect(held.filter((h) => h.address === DOWN).length).toBeGreaterThan(0);
    expect(held.filter((h) => h.slots > 0 || h.reserved > 0)).toEqual([]);
    // The lasting 451: given up after the bounded attempts (30 min, 2 h, 12 h apart), never delivered.
    const [down] = await outbox(DOWN);
    expect(down).toMatchObject({ state: 'bounced', soft_bounces: SOFT_BOUNCE_WAITS_MS.length + 1 });
    expect(to(DOWN)).toHaveLength(0);
    const bounced = await db.query<{ payload: { kind: string; final: boolean; attempt: number; code: number } }>("SELECT payload FROM flow_events WHERE type = 'email.bounced' AND payload->>'kind' = 'soft' ORDER BY occurred_at");
    const downEvents = bounced.filter((e) => e.payload.attempt !== undefined && e.payload.final !== undefined);
    expect(downEvents.filter((e) => e.payload.final)).toEqual([{ payload: expect.objectContaining({ kind: 'soft', code: 451, final: true, attempt: SOFT_BOUNCE_WAITS_MS.length + 1 }) }]);
    const soft = await db.query<{ at: Date }>("SELECT occurred_at AS at FROM flow_events WHERE type = 'email.bounced' AND key = (SELECT id::text FROM prospects WHERE email = $1) ORDER BY occurred_at", [DOWN]);
    const gaps = soft.slice(1).map((e, i) => new Date(e.at).getTime() - new Date(soft[i]!.at).getTime());
    SOFT_BOUNCE_WAITS_MS.forEach((wait, i) => expect(gaps[i]).toBeGreaterThanOrEqual(wait));
    // The 550 at RCPT: a hard bounce, suppressed.
    expect(await outbox(GONE)).toMatchObject([{ state: 'bounced', reason: 'hard bounce 550' }]);
    expect(await db.query('SELECT reason FROM email_suppressions WHERE address = $1', [GONE])).toEqual([{ reason: 'hard_bounce' }]);
    expect(to(GONE)).toHaveLength(0);
  }, 120_000);

  it('stops the sequences of both bounces: the follow-up goes only to those whose teaser went', async () => {
    smtp.clear();
    smtp.faults.set({});
    const friday = await run(daily, new ManualClock(new Date(FRIDAY)));
    expect(friday.status).toBe('completed');
    expect(smtp.messages.map((m) => m.envelope.to[0]).sort()).toEqual([OK, FLAKY].sort());
    expect(smtp.messages.every((m) => m.subject?.startsWith('Re: '))).toBe(true);
    expect((await outbox(DOWN)).map((r) => r.sequence_step)).toEqual(['teaser']);
    expect((await outbox(GONE)).map((r) => r.sequence_step)).toEqual(['teaser']);
  }, 60_000);

  it('skips a marketing email.send to the hard-bounced address in another pipeline', async () => {
    smtp.clear();
    const result = await run(marketing, new ManualClock(new Date(FRIDAY)), { to: [GONE, OK] });
    expect(result.status).toBe('completed');
    expect(result.steps[0]!.items).toEqual({ total: 2, succeeded: 1, failed: 0, skipped: 1 });
    expect(result.skipped).toEqual([{ step: 'send', reason: 'suppressed (hard_bounce)', n: 1 }]);
    expect(smtp.messages.map((m) => m.envelope.to[0])).toEqual([OK]);
  }, 60_000);
});
